"""Drift monitoring operator (see :mod:`airtrain.steps.monitor` and :mod:`airtrain.monitoring`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink, Context

from airtrain_airflow import links


def report_url(pipeline: str, report_id: str | None) -> str:
    """Where the UI plugin serves a drift report (``/airtrain/reports/<pipeline>/drift/<report_id>``)."""
    return links.report_url(pipeline, "drift", report_id)


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
    """Compare monitoring windows with the champion's reference, store the metrics, the report and
    the decision of each, and return the decision that counts (``trigger`` tells whether a retrain is
    due; every window's outcome is under ``windows``).

    :param pipeline: the spec name (``include/pipelines/<pipeline>.yaml``).
    :param window_end: last day of the window, YYYY-MM-DD; empty means every date published by the
        triggering predictions asset events (oldest first, each once, and any published date after
        the newest one checked that no monitor run checked), or for a time run the day before the
        run's logical date in the pipeline's timezone once its predictions are published. (templated)
    """

    template_fields: Sequence[str] = ("window_end",)
    operator_extra_links = (DriftReportLink(),)
    ui_color = "#fde2e4"

    def __init__(self, *, pipeline: str, window_end: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.window_end = window_end

    def execute(self, context: Context) -> dict[str, Any]:
        from airtrain.dates import resolve_partition
        from airtrain.steps import monitor

        from airtrain_airflow.runtime import fail_fast, spec_for, warehouse_for
        from airtrain_airflow.storage import report_store

        with fail_fast():
            spec = spec_for(self.pipeline)
        try:
            ends = self._window_ends(spec, context, resolve_partition)
        except ValueError as exc:  # no date to check, or a malformed one: retrying cannot fix it
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        with fail_fast():
            result = monitor.check_windows(warehouse_for(spec), spec, ends, run_id=context["run_id"],
                                           reports_root=report_store())
        result["report_url"] = report_url(spec.name, result.get("report_id"))
        for w in result["windows"]:
            self.log.info("%s window %s: %s", spec.name, w["window_end"], w["decision"])
        self.log.info("%s: %s - %s (report %s)", spec.name, result["decision"], result["reason"],
                      result.get("report_path"))
        return result

    def _window_ends(self, spec: Any, context: Context, resolve_partition: Any) -> list[Any]:
        """The windows to check, oldest first: the ``date`` param; else, in a run started by predictions
        asset events (no logical date), every date they name - several when events piled up while a
        monitor run was busy - plus any published date after the newest checked one that no monitor
        run checked; else (a time run) the day before the logical date, checked only once its
        predictions are published (with the same catch-up)."""
        from airtrain.steps import monitor

        from airtrain_airflow.runtime import run_instant, triggering_extras, warehouse_for

        if self.window_end:
            return [resolve_partition(self.window_end, None, spec.schedule.timezone)]
        extras = triggering_extras(context)
        wh = warehouse_for(spec)
        if extras:
            dates = monitor.dates_from_events(spec.name, extras)
            if len(dates) > 1:
                self.log.info("this run consumed publish events of %s dates: checking each, oldest first: %s",
                              len(dates), ", ".join(str(d) for d in dates))
            return monitor.windows_to_check(wh, spec, dates, run_id=context["run_id"])
        end = resolve_partition(None, run_instant(context), spec.schedule.timezone)
        if not monitor.is_published(wh, spec, end):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"predictions of {end} are not published yet: the window is not checked "
                                       "(the publish event will start a monitor run)")
        return monitor.windows_to_check(wh, spec, [end], run_id=context["run_id"])
