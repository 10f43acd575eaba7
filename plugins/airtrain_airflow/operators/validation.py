"""The ``validate`` task: Great Expectations on each partition, with a link to its report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink, Context

REPORTS_XCOM = "reports"


class ValidationReportLink(BaseOperatorLink):
    """"Validation report" button on the task instance: the partition's HTML report (for a range
    run: the first blocked partition's, else the last one's). Works for a blocked (failed) run too:
    the reports are recorded before the task fails."""

    name = "Validation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.bases.xcom import BaseXCom as XCom

        from airtrain_airflow.links import report_url

        reports = XCom.get_value(ti_key=ti_key, key=REPORTS_XCOM)
        if not isinstance(reports, list) or not reports:
            return ""
        pick = next((r for r in reports if r.get("blocked")), reports[-1])
        return report_url(getattr(operator, "pipeline", ""), "validation", pick.get("report_id"))


class ValidateOperator(BaseOperator):
    """Validate the run's partitions (``airtrain.steps.retrain.validate``): valid rows to the features table,
    failing rows to quarantine with their reasons, results to ``monitoring.validation_runs``, an HTML
    report per partition. A blocked partition fails the task at once (no retries) after everything
    was stored; nothing downstream runs.

    :param pipeline: the spec name.
    :param plan: the ``check_params`` result (the dates to validate). (templated)
    """

    template_fields: Sequence[str] = ("plan",)
    operator_extra_links = (ValidationReportLink(),)
    ui_color = "#fff3bf"

    def __init__(self, *, pipeline: str, plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.plan = plan

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airtrain_airflow import runtime

        def record(summaries: list[dict[str, Any]]) -> None:
            context["ti"].xcom_push(key=REPORTS_XCOM, value=[
                {"date": s["date"], "report_id": s["report_id"], "blocked": s["blocked"]} for s in summaries])

        return runtime.validate(self.pipeline, dict(self.plan), on_stored=record)
