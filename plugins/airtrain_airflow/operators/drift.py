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
    :param window_end: last day of the window, YYYY-MM-DD; empty means the day before the run's
        logical date in the pipeline's timezone. (templated)
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

        from airtrain_airflow.runtime import fail_fast, report_store, run_instant, spec_for, warehouse_for

        with fail_fast():
            spec = spec_for(self.pipeline)
        try:
            end = resolve_partition(self.window_end or None, run_instant(context), spec.schedule.timezone)
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
