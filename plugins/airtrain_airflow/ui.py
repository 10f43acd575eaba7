"""The "Drift reports" page of the Airflow UI: a small FastAPI app the api-server mounts at
``/airtrain`` (see :mod:`airtrain_airflow.plugin`).

* ``GET /airtrain/`` - per pipeline, the monitor's decisions (window, champion, decision, reason,
  drift share, rows) with a link to each Evidently report and to the retrain run it triggered.
* ``GET /airtrain/reports/<pipeline>/<report_id>`` - one report (the HTML file the monitor wrote).

Every route needs a logged-in Airflow user (the UI's JWT cookie or a bearer token; the same check
as Airflow's own API). Report paths are built from an allow-listed pipeline name and a report id
matching ``[A-Za-z0-9_.-]+``, then checked to stay inside the reports folder.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

REPORT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


def _specs() -> dict[str, Any]:
    from airtrain.spec import load_specs

    return {s.name: s for s in load_specs()}


def _reports_root() -> Path:
    from airtrain_airflow.runtime import reports_root

    return reports_root().resolve()


def _warehouse(spec: Any):
    """The warehouse from the spec's Airflow connection (env var or secrets backend)."""
    from airtrain.db import Warehouse

    from airtrain_airflow.hooks import normalize_uri

    env = os.environ.get(f"AIRFLOW_CONN_{spec.warehouse.conn_id.upper()}")
    if env:
        uri = env
    else:
        from airflow.models.connection import Connection

        uri = Connection.get_connection_from_secrets(spec.warehouse.conn_id).get_uri()
    return Warehouse(normalize_uri(uri), application_name="airtrain:ui")


def report_file(pipeline: str, report_id: str, specs: dict[str, Any] | None = None, root: Path | None = None
                ) -> Path:
    """The report's file, or HTTPException 404 (unknown pipeline, malformed id, missing or outside)."""
    specs = specs if specs is not None else _specs()
    if pipeline not in specs or not REPORT_ID.match(report_id) or ".." in report_id:
        raise HTTPException(status_code=404, detail="no such report")
    root = (root or _reports_root()).resolve()
    path = (root / pipeline / "drift" / f"{report_id}.html").resolve()
    if root not in path.parents or not path.is_file():
        raise HTTPException(status_code=404, detail="no such report")
    return path


def _rows(spec: Any) -> tuple[list[dict[str, Any]], str | None]:
    from airtrain.monitoring import list_decisions

    try:
        return list_decisions(_warehouse(spec), spec), None
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of a 500
        from airtrain.db import redact_text

        return [], redact_text(f"{type(exc).__name__}: {exc}")[:300]


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1b1f24}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem} th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;
text-align:left;vertical-align:top} th{background:#f6f8fa}
.retrain{color:#b42318;font-weight:600} .cooldown{color:#b54708} .drift{color:#b54708}
.no_drift{color:#067647} .insufficient_data,.no_champion{color:#667085} .err{color:#b42318}
.muted{color:#667085;font-size:.85rem}
"""


def render_index(specs: dict[str, Any], rows_for: Any) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Drift reports</title>",
             f"<style>{STYLE}</style></head><body><h1>Drift reports and decisions</h1>",
             "<p class='muted'>Written by each pipeline's <code>&lt;name&gt;_monitor</code> DAG "
             "(tables <code>monitoring.drift_decisions</code> and <code>monitoring.drift_metrics</code>).</p>"]
    for name, spec in sorted(specs.items()):
        rows, err = rows_for(spec)
        e = html.escape
        parts.append(f"<h2 id='{e(name)}'>{e(name)}</h2>")
        parts.append(f"<p class='muted'>DAGs: <a href='/dags/{e(spec.monitor_dag_id)}' target='_top'>"
                     f"{e(spec.monitor_dag_id)}</a> · <a href='/dags/{e(spec.retrain_dag_id)}' target='_top'>"
                     f"{e(spec.retrain_dag_id)}</a></p>")
        if err:
            parts.append(f"<p class='err'>cannot read the decisions: {e(err)}</p>")
            continue
        if not rows:
            parts.append("<p class='muted'>no monitoring runs yet</p>")
            continue
        parts.append("<table><tr><th>window</th><th>champion</th><th>decision</th><th>drift share</th>"
                     "<th>rows</th><th>reason</th><th>report</th><th>retrain run</th></tr>")
        for r in rows:
            window = e(str(r["window_end"])) if r["window_start"] in (None, r["window_end"]) else \
                f"{e(str(r['window_start']))} … {e(str(r['window_end']))}"
            share = "" if r["drift_share"] is None else f"{r['drift_share']:.0%}"
            rep = (f"<a href='reports/{e(name)}/{e(r['report_id'])}' target='_blank'>open</a>"
                   if r["report_id"] else "")
            run = (f"<a href='/dags/{e(spec.retrain_dag_id)}/runs/{e(r['triggered_run_id'])}' target='_top'>"
                   f"{e(r['triggered_run_id'])}</a>" if r["triggered_run_id"] else "")
            version = f"v{r['model_version']}" if r["model_version"] is not None else "-"
            parts.append(f"<tr><td>{window}</td><td>{version}</td><td class='{e(r['decision'])}'>"
                         f"{e(r['decision'])}</td><td>{share}</td><td>{r['current_rows'] or ''}</td>"
                         f"<td>{e(r['reason'] or '')}</td><td>{rep}</td><td>{run}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import get_user  # Airflow's own login check; no fallback

    app = FastAPI(title="airtrain drift reports", docs_url=None, redoc_url=None, openapi_url=None)
    auth = Depends(get_user)

    @app.get("/", response_class=HTMLResponse, dependencies=[auth])
    def index() -> HTMLResponse:
        return HTMLResponse(render_index(_specs(), _rows))

    @app.get("/reports/{pipeline}/{report_id}", dependencies=[auth])
    def report(pipeline: str, report_id: str) -> FileResponse:
        return FileResponse(report_file(pipeline, report_id), media_type="text/html")

    return app


class LazyApp:
    """An ASGI app that builds :func:`create_app` on its first request, so that processes which only
    load plugins (scheduler, workers) never import the API's security stack."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "airtrain_airflow.ui.LazyApp()"


app = LazyApp()
