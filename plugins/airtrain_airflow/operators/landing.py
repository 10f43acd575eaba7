"""Waiting for landing files that may still arrive (see :func:`airtrain.data.ingest.landing_deadline`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context


class LandingFileSensor(BaseOperator):
    """Wait for the landing files of the run's dates to be complete, deferred (no worker slot held).

    A file for day D may arrive until the end of D in the pipeline's timezone plus the spec's
    ``source.wait_minutes``. A file that is missing after that deadline - e.g. a backfill of an old
    date that never landed - fails the task at once, without retries, naming the file; a missing
    file that may still arrive is waited for until its deadline.

    With ``source.ready_marker`` a file is complete only once its marker is there (and the file
    matches the size/sha256 the marker may carry): a file that is there but not complete is being
    written, and is waited for like a missing one - also after its deadline, for
    ``source.wait_minutes`` from the moment this task first saw it incomplete (a late re-delivery in
    progress is not "a file that can no longer arrive"). Still incomplete then: the task fails, naming why.

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

    def execute(self, context: Context, event: dict[str, Any] | None = None,
                late_until: dict[str, str] | None = None) -> dict[str, Any]:
        import datetime as dt

        from airflow.sdk.exceptions import AirflowFailException
        from airtrain.steps.retrain import (
            incomplete_landing_files,
            landing_deadline,
            marker_relpath,
            source_relpath,
        )

        from airtrain_airflow.runtime import spec_for
        from airtrain_airflow.storage import landing_root, landing_url
        from airtrain_airflow.triggers import LandingFilesTrigger

        spec = spec_for(self.pipeline)
        dates = [dt.date.fromisoformat(d) for d in self.plan["dates"]]
        waiting = incomplete_landing_files(spec, dates, landing_root())
        if not waiting:
            return {"dates": len(dates), "waited": event is not None}
        now = dt.datetime.now(dt.UTC)
        # a file being written after its deadline: waited for until then (also echoed back in the event)
        late_until = dict(late_until or (event or {}).get("late_until") or {})
        until: dict[str, dt.datetime] = {}
        late = []
        for d, path, why in waiting:
            rel, deadline = source_relpath(spec, d), landing_deadline(spec, d)
            if why != "missing" and deadline <= now:
                late_until.setdefault(rel, (now + dt.timedelta(minutes=spec.source.wait_minutes)).isoformat())
                deadline = dt.datetime.fromisoformat(late_until[rel])
            until[rel] = deadline
            if deadline <= now:
                late.append((d, path, why, deadline))
        if late:
            files = "\n  - ".join(f"{d}: {p} ({'missing' if why == 'missing' else 'incomplete: ' + why}; expected by "
                                  f"{t:%Y-%m-%d %H:%M} UTC)" for d, p, why, t in late[:10])
            raise AirflowFailException(
                f"{len(late)} landing file(s) of {spec.name} are missing or incomplete and can no longer arrive "
                f"(source.wait_minutes={spec.source.wait_minutes:g} after the end of their day, or after a late "
                f"delivery was first seen):\n  - {files}\n"
                "Deliver the file(s) and clear this task, or trigger the run with the right 'date'.")
        first = min(until.values())
        self.log.info("%d landing file(s) not complete yet (e.g. %s: %s); waiting until %s UTC", len(waiting),
                      waiting[0][1], waiting[0][2], f"{first:%Y-%m-%d %H:%M:%S}")
        markers = {source_relpath(spec, d): m for d, _, _ in waiting if (m := marker_relpath(spec, d))}
        self.defer(trigger=LandingFilesTrigger([source_relpath(spec, d) for d, _, _ in waiting], first.isoformat(),
                                               self.poke_interval, root_url=landing_url(),
                                               conn_id=os.environ.get("AIRTRAIN_LANDING_CONN_ID") or None,
                                               markers=markers or None, late_until=late_until or None),
                   method_name="execute", kwargs={"late_until": late_until} if late_until else None)
        return {}  # not reached: defer() raises
