"""The project's Airflow plugin: the "Reports" page (a FastAPI app the api-server mounts at /airtrain,
listed under Browse in the UI: validation and drift reports of every pipeline) and the "Validation
report" / "Drift report" extra links of the validate and drift_check tasks.

Registered through the ``airflow.plugins`` entry point of the installed ``airtrain`` distribution
(pyproject.toml), so every component finds it without a plugins folder: the Docker image installs
the project as a package (``pip install .``) and the local stack installs it in editable mode.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airtrain_airflow.cards import ModelCardLink
from airtrain_airflow.operators.drift import DriftReportLink
from airtrain_airflow.operators.validation import ValidationReportLink


def _fastapi_apps() -> list[dict]:
    from airtrain_airflow.ui import app

    return [{"app": app, "url_prefix": "/airtrain", "name": "airtrain reports"}]


class AirtrainPlugin(AirflowPlugin):
    name = "airtrain"
    fastapi_apps = _fastapi_apps()
    external_views = [
        {
            "name": "Validation & drift reports",
            "href": "/airtrain/",
            "destination": "nav",
            "category": "browse",
            "url_route": "reports",
        }
    ]
    operator_extra_links = [DriftReportLink(), ValidationReportLink(), ModelCardLink()]
