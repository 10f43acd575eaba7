"""Waiting for landing files that may still arrive (see :func:`airtrain.data.ingest.landing_deadline`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context


class LandingFileSensor(BaseOperator):
    """Wait for the landing files of the run's dates, deferred (no worker slot held while waiting).

    A file for day D may arrive until the end of D in the pipeline's timezone plus the spec's
    ``source.wait_minutes``. A file that is missing after that deadline - e.g. a backfill of an old
    date that never landed - fails the task at once, without retries, naming the file; a missing
    file that may still arrive is waited for until its deadline.

    :param pipeline: the spec name.
    :param plan: the ``check_params`` result; its ``dates`` are the partitions to wait for. (templated)
    :param poke_interval: seconds between two looks at the landing folder.
    """

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#e9ecef"

    def __init__(self, *, pipeline: str, plan: Any, poke_interval: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.plan = plan
        self.poke_interval = poke_interval

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        import datetime as dt

        from airflow.sdk.exceptions import AirflowFailException
        from airtrain.steps.retrain import landing_deadline, missing_landing_files, source_relpath

        from airtrain_airflow.runtime import spec_for
        from airtrain_airflow.storage import landing_root, landing_url
        from airtrain_airflow.triggers import LandingFilesTrigger

        spec = spec_for(self.pipeline)
        dates = [dt.date.fromisoformat(d) for d in self.plan["dates"]]
        missing = missing_landing_files(spec, dates, landing_root())
        if not missing:
            return {"dates": len(dates), "waited": event is not None}
        now = dt.datetime.now(dt.UTC)
        late = [(d, p, landing_deadline(spec, d)) for d, p in missing if landing_deadline(spec, d) <= now]
        if late:
            files = "\n  - ".join(f"{d}: {p} (expected by {t:%Y-%m-%d %H:%M} UTC)" for d, p, t in late[:10])
            raise AirflowFailException(
                f"{len(late)} landing file(s) of {spec.name} are missing and can no longer arrive "
                f"(source.wait_minutes={spec.source.wait_minutes:g} after the end of their day):\n  - {files}\n"
                "Deliver the file(s) and clear this task, or trigger the run with the right 'date'.")
        until = min(landing_deadline(spec, d) for d, _ in missing)
        self.log.info("%d landing file(s) not there yet (e.g. %s); waiting until %s UTC", len(missing),
                      missing[0][1], f"{until:%Y-%m-%d %H:%M:%S}")
        self.defer(trigger=LandingFilesTrigger([source_relpath(spec, d) for d, _ in missing], until.isoformat(),
                                               self.poke_interval, root_url=landing_url(),
                                               conn_id=os.environ.get("AIRTRAIN_LANDING_CONN_ID") or None),
                   method_name="execute")
        return {}  # not reached: defer() raises
