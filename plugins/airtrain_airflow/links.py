"""Where the UI plugin (``/airtrain``, see :mod:`airtrain_airflow.ui`) serves pages and reports."""

from __future__ import annotations

PREFIX = "/airtrain"


def report_url(pipeline: str, kind: str, report_id: str | None) -> str:
    """A report's page (``/airtrain/reports/<pipeline>/<kind>/<report_id>``), or the pipeline's
    section of the reports page when there is no report id."""
    if not report_id:
        return reports_page_url(pipeline, kind)
    return f"{PREFIX}/reports/{pipeline}/{kind}/{report_id}"


def reports_page_url(pipeline: str, kind: str = "drift") -> str:
    return f"{PREFIX}/#{pipeline}-{kind}"
