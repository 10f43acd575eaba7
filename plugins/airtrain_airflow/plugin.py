"""The project's Airflow plugin: the "Drift reports" page (a FastAPI app the api-server mounts at
/airtrain, listed under Browse in the UI) and the "Drift report" extra link of DriftCheckOperator.

Registered through the ``airflow.plugins`` entry point of the installed ``airtrain`` distribution
(pyproject.toml), so every component finds it without a plugins folder: the Docker image installs
the project as a package (``pip install .``) and the local stack installs it in editable mode.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airtrain_airflow.operators.drift import DriftReportLink


def _fastapi_apps() -> list[dict]:
    from airtrain_airflow.ui import app

    return [{"app": app, "url_prefix": "/airtrain", "name": "airtrain drift reports"}]


class AirtrainPlugin(AirflowPlugin):
    name = "airtrain"
    fastapi_apps = _fastapi_apps()
    external_views = [
        {
            "name": "Drift reports",
            "href": "/airtrain/",
            "destination": "nav",
            "category": "browse",
            "url_route": "drift-reports",
        }
    ]
    operator_extra_links = [DriftReportLink()]
