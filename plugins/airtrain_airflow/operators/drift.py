"""Drift monitoring operator (see :mod:`airtrain.monitoring`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink, Context


def report_url(pipeline: str, report_id: str | None) -> str:
    """Where the UI plugin serves a drift report (``/airtrain/reports/<pipeline>/drift/<report_id>``)."""
    from airtrain_airflow.links import report_url as _url

    return _url(pipeline, "drift", report_id)


class DriftReportLink(BaseOperatorLink):
    """"Drift report" button on the task instance: opens the Evidently HTML report of the run."""

    name = "Drift report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.bases.xcom import BaseXCom as XCom

        value = XCom.get_value(ti_key=ti_key, key="return_value") or {}
        if isinstance(value, dict):
            return report_url(value.get("pipeline", getattr(operator, "pipeline", "")), value.get("report_id"))
        return ""


class DriftCheckOperator(BaseOperator):
    """Compare a monitoring window with the champion's reference, store the metrics, the report and
    the decision, and return the decision (``trigger`` tells whether a retrain is due).

    :param pipeline: the spec name (``include/pipelines/<pipeline>.yaml``).
    :param window_end: last day of the window, YYYY-MM-DD; empty means the date published by the
        triggering predictions asset event, or for a time run the day before the run's logical date
        in the pipeline's timezone once its predictions are published. (templated)
    """

    template_fields: Sequence[str] = ("window_end",)
    operator_extra_links = (DriftReportLink(),)
    ui_color = "#fde2e4"

    def __init__(self, *, pipeline: str, window_end: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.window_end = window_end

    def execute(self, context: Context) -> dict[str, Any]:
        from airtrain import monitoring
        from airtrain.dates import resolve_partition

        from airtrain_airflow.runtime import fail_fast, report_store, spec_for, warehouse_for

        with fail_fast():
            spec = spec_for(self.pipeline)
        try:
            end = self._window_end(spec, context, resolve_partition)
        except ValueError as exc:  # no date to check, or a malformed one: retrying cannot fix it
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        with fail_fast():
            result = monitoring.run_check(warehouse_for(spec), spec, end, run_id=context["run_id"],
                                          reports_root=report_store())
        result["report_url"] = report_url(spec.name, result.get("report_id"))
        self.log.info("%s: %s - %s (report %s)", spec.name, result["decision"], result["reason"],
                      result.get("report_path"))
        return result

    def _window_end(self, spec: Any, context: Context, resolve_partition: Any) -> Any:
        """The window to check: the ``date`` param; else, in a run started by a predictions asset
        event (no logical date), the published date from the event; else (a time run) the day before
        the logical date - checked only once its predictions are published."""
        from airtrain import release

        from airtrain_airflow.runtime import warehouse_for

        if self.window_end:
            return resolve_partition(self.window_end, None, spec.schedule.timezone)
        events = context.get("triggering_asset_events") or {}
        extras = [dict(e.extra or {}) for asset in events for e in events[asset]]
        if extras:
            end, older = release.window_end_from_events(spec.name, extras)
            if older:
                self.log.info("this run consumed publish events of %s too; checking the newest window", older)
            return end
        from airtrain_airflow.runtime import run_instant

        end = resolve_partition(None, run_instant(context), spec.schedule.timezone)
        if not release.is_published(warehouse_for(spec), spec, end):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"predictions of {end} are not published yet: the window is not checked "
                                       "(the publish event will start a monitor run)")
        return end
