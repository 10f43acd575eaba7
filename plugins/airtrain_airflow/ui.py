"""The "Validation & drift reports" page of the Airflow UI: a small FastAPI app the api-server mounts
at ``/airtrain`` (see :mod:`airtrain_airflow.plugin`).

* ``GET /airtrain/`` - per pipeline, the monitor's decisions (window, champion, decision, reason,
  drift share, rows) with a link to each Evidently report and to the retrain run it triggered, and
  the validated partitions (rows, quarantined, blocked) with a link to each validation report.
* for pipelines with ``promotion.approval: required``: the promotion requests waiting for a person
  (Airflow's HITL records) with a link to answer them, and the recent decisions (``registry.approvals``).
* whether automatic promotions are held (``registry.promotion_holds``: since when, by whom, why) and
  the recent holds and releases.
* for pipelines with ``rollout.strategy: canary``: the canaries (``registry.rollouts``: running first in
  colour) with their newest check (``monitoring.canary_evaluations``: rows per arm, improvement and interval).
* ``GET /airtrain/reports/<pipeline>/<kind>/<report_id>`` - one report, ``kind`` = ``validation`` or
  ``drift`` (``/airtrain/reports/<pipeline>/<report_id>`` still serves drift reports: older alerts
  link there).

Every route needs a logged-in Airflow user (the UI's JWT cookie or a bearer token; the same check
as Airflow's own API) **and** the auth manager's per-DAG permission: a pipeline's drift decisions
and reports need GET on its ``<name>_monitor`` DAG's task instances, its validations on its
``<name>_retrain`` DAG's (``is_authorized_dag``, so FAB/Keycloak/custom managers apply their DAG
rules); a pipeline the user may read neither of is not listed, and its reports answer 403.
Reports are read through :mod:`airtrain.warehouse.reports` only (allow-listed pipeline, kind and id; paths
checked to stay inside the store) and served with a sandboxing Content-Security-Policy
(:data:`REPORT_CSP`): they run in an opaque origin, cannot reach the network, the Airflow API or
its cookies.
"""

from __future__ import annotations

import html
import os
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from airtrain_airflow.links import PREFIX, report_url


def _scan():
    """The spec folder: the specs that load, and the errors of those that do not (one broken spec
    never hides the other pipelines' reports)."""
    from airtrain.spec import scan_specs

    return scan_specs()


def _specs() -> dict[str, Any]:
    return {s.name: s for s in _scan().specs}


def _error_text(exc: BaseException, limit: int = 300) -> str:
    """An error shown on the page: its type and message, redacted (never a connection URI's password)."""
    from airtrain.warehouse import redact_text

    return redact_text(f"{type(exc).__name__}: {exc}")[:limit]


def _warehouse(spec: Any):
    """The warehouse from the spec's Airflow connection (env var or secrets backend)."""
    from airtrain.warehouse import Warehouse

    from airtrain_airflow.hooks import normalize_uri

    env = os.environ.get(f"AIRFLOW_CONN_{spec.warehouse.conn_id.upper()}")
    if env:
        uri = env
    else:
        from airflow.models.connection import Connection

        uri = Connection.get_connection_from_secrets(spec.warehouse.conn_id).get_uri()
    return Warehouse(normalize_uri(uri), application_name="airtrain:ui")


def read_report(pipeline: str, kind: str, report_id: str, specs: dict[str, Any] | None = None,
                store: Any = None) -> str:
    """A report's HTML, or HTTPException 404 (unknown pipeline or kind, malformed id, not stored), or
    503 when the report store itself cannot be used (the message names its URL and connection)."""
    from airtrain.warehouse.reports import ReportNotFound

    from airtrain_airflow.storage import ObjectStoreError, report_store

    specs = specs if specs is not None else _specs()
    if pipeline not in specs:
        raise HTTPException(status_code=404, detail="no such report")
    try:
        return (store or report_store()).read(pipeline, kind, report_id)
    except ReportNotFound:
        raise HTTPException(status_code=404, detail="no such report") from None
    except ObjectStoreError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None


#: Content-Security-Policy of a served report. Validation reports are static HTML: no scripts at all.
#: Evidently's drift report is a page of inline JavaScript (its UI bundle, data and fonts inlined, no
#: external file): it may run scripts, but in a sandbox without same-origin (an opaque origin: no
#: Airflow cookies or storage, no same-origin API calls), with no network (default/connect-src
#: 'none'), no forms, no navigation of the Airflow page. Checked in headless Chromium
#: (tests/e2e/test_report_csp.py): the report renders all its charts under this policy, and none
#: under the validation one.
REPORT_CSP = {
    "validation": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
                  "base-uri 'none'; frame-ancestors 'self'",
    "drift": "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
             "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
             "form-action 'none'; base-uri 'none'; frame-ancestors 'self'",
}


def report_response(kind: str, body: str) -> HTMLResponse:
    return HTMLResponse(body, headers={"Content-Security-Policy": REPORT_CSP[kind], "X-Content-Type-Options": "nosniff",
                                       "Referrer-Policy": "no-referrer"})


def can_read(user: Any, dag_id: str) -> bool:
    """The auth manager's own per-DAG check: may ``user`` read ``dag_id``'s task instances? (In multi-team
    mode with the DAG's team, as Airflow's own API asks: a team-scoped user must not read another team's.)"""
    from airflow.api_fastapi.app import create_auth_manager  # the api-server's singleton (made if missing)
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.configuration import conf

    team = None
    if conf.getboolean("core", "multi_team", fallback=False):
        from airflow.models.dag import DagModel

        team = DagModel.get_team_name(dag_id)
    return bool(create_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE,
                                                     details=DagDetails(id=dag_id, team_name=team), user=user))


def _dag_of(spec: Any, kind: str) -> str:
    return spec.monitor_dag_id if kind == "drift" else spec.retrain_dag_id


def _allowed(user: Any, rows_for: Any, kind: str):
    """``rows_for`` behind the per-DAG check (a refused section says so instead of listing rows)."""
    def rows(spec: Any) -> tuple[list[dict[str, Any]], str | None]:
        dag_id = _dag_of(spec, kind)
        if not can_read(user, dag_id):
            return [], f"not permitted: you may not read the DAG {dag_id}"
        return rows_for(spec)

    return rows


def _query(module: str, fn_name: str):
    def rows(spec: Any) -> tuple[list[dict[str, Any]], str | None]:
        import importlib

        try:
            return getattr(importlib.import_module(module), fn_name)(_warehouse(spec), spec), None
        except Exception as exc:  # noqa: BLE001 - shown on the page instead of a 500
            return [], _error_text(exc)

    return rows


_rows = _query("airtrain.monitoring.windows", "list_decisions")
_validations = _query("airtrain.data.quarantine", "list_validations")


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1b1f24}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem} th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;
text-align:left;vertical-align:top} th{background:#f6f8fa}
.retrain{color:#b42318;font-weight:600} .cooldown{color:#b54708} .drift{color:#b54708}
.no_drift{color:#067647} .insufficient_data,.no_champion{color:#667085} .err{color:#b42318}
.blocked{color:#b42318;font-weight:600} .passed{color:#067647} h3{font-size:1rem;margin-top:1.2rem}
.muted{color:#667085;font-size:.85rem}
.approved{color:#067647} .rejected{color:#b42318} .timed_out{color:#b54708} .pending-approval{background:#fffbeb}
"""


def _decisions_table(name: str, spec: Any, rows: list[dict[str, Any]]) -> list[str]:
    e = html.escape
    parts = ["<table><tr><th>window</th><th>champion</th><th>decision</th><th>drift share</th>"
             "<th>rows</th><th>reason</th><th>report</th><th>retrain run</th></tr>"]
    for r in rows:
        window = e(str(r["window_end"])) if r["window_start"] in (None, r["window_end"]) else \
            f"{e(str(r['window_start']))} … {e(str(r['window_end']))}"
        share = "" if r["drift_share"] is None else f"{r['drift_share']:.0%}"
        rep = (f"<a href='{e(report_url(name, 'drift', r['report_id']))}' target='_blank'>open</a>"
               if r["report_id"] else "")
        run = (f"<a href='/dags/{e(spec.retrain_dag_id)}/runs/{e(r['triggered_run_id'])}' target='_top'>"
               f"{e(r['triggered_run_id'])}</a>" if r["triggered_run_id"] else "")
        version = f"v{r['model_version']}" if r["model_version"] is not None else "-"
        parts.append(f"<tr><td>{window}</td><td>{version}</td><td class='{e(r['decision'])}'>"
                     f"{e(r['decision'])}</td><td>{share}</td><td>{r['current_rows'] or ''}</td>"
                     f"<td>{e(r['reason'] or '')}</td><td>{rep}</td><td>{run}</td></tr>")
    parts.append("</table>")
    return parts


def _validations_table(name: str, spec: Any, rows: list[dict[str, Any]]) -> list[str]:
    e = html.escape
    parts = ["<table><tr><th>partition</th><th>result</th><th>rows</th><th>valid</th><th>quarantined</th>"
             "<th>report</th><th>run</th></tr>"]
    for r in rows:
        day = str(r["partition_date"])
        result = "<span class='blocked'>blocked</span>" if r["blocked"] else "<span class='passed'>passed</span>"
        rep = (f"<a class='validation-report' href='{e(report_url(name, 'validation', day))}' target='_blank'>open</a>"
               if r["report_path"] else "")
        run = (f"<a href='/dags/{e(spec.retrain_dag_id)}/runs/{e(r['run_id'])}' target='_top'>{e(r['run_id'])}</a>"
               if r["run_id"] else "")
        attempt = r.get("blocked_attempt") or {}
        if attempt:  # a later re-run was blocked; this validation stays in force (issue 27)
            result += (f" <span class='blocked'>(re-run {e(str(attempt.get('run_id')))} blocked: <a "
                       f"href='{e(report_url(name, 'validation', day + '.blocked'))}' target='_blank'>report</a>)</span>")
        parts.append(f"<tr><td>{e(day)}</td><td>{result}</td><td>{r['rows_total']}</td><td>{r['rows_valid']}</td>"
                     f"<td>{r['rows_quarantined']}</td><td>{rep}</td><td>{run}</td></tr>")
    parts.append("</table>")
    return parts


def pending_approvals(dag_id: str) -> list[dict[str, Any]]:
    """Promotion requests of ``dag_id`` waiting for a person (Airflow's HITL records, metadata DB)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as s:
        rows = s.execute(
            select(TI.run_id, TI.task_id, TI.map_index, HITLDetail.subject, HITLDetail.created_at, TI.trigger_timeout)
            .join(HITLDetail, HITLDetail.ti_id == TI.id)
            .where(TI.dag_id == dag_id, HITLDetail.responded_at.is_(None),
                   TI.state == TaskInstanceState.AWAITING_INPUT)
            .order_by(HITLDetail.created_at)).all()
    return [dict(zip(("run_id", "task_id", "map_index", "subject", "created_at", "expires_at"), r, strict=True))
            for r in rows]


def _approvals(spec: Any) -> tuple[dict[str, Any], str | None]:
    try:
        from airtrain.registry import approvals

        return {"pending": pending_approvals(spec.retrain_dag_id),
                "decided": approvals.list_approvals(_warehouse(spec), spec, limit=10)}, None
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of a 500
        return {}, _error_text(exc)


def _approvals_table(name: str, spec: Any, data: dict[str, Any]) -> list[str]:
    e = html.escape
    dag = e(spec.retrain_dag_id)
    parts = ["<table><tr><th>waiting since</th><th>request</th><th>expires</th><th>answer</th></tr>"]
    for r in data.get("pending", []):
        url = f"/dags/{dag}/runs/{e(r['run_id'])}/tasks/{e(r['task_id'])}/required_actions"
        parts.append(f"<tr class='pending-approval'><td>{e(str(r['created_at'])[:19])}</td><td>{e(r['subject'] or '')}"
                     f" (run <a href='/dags/{dag}/runs/{e(r['run_id'])}' target='_top'>{e(r['run_id'])}</a>)</td>"
                     f"<td>{e(str(r['expires_at'] or '')[:19])}</td><td><a href='{url}' target='_top'>approve or "
                     "reject</a></td></tr>")
    if not data.get("pending"):
        parts.append("<tr><td colspan='4' class='muted'>no approval is pending</td></tr>")
    parts.append("</table><table><tr><th>version</th><th>champion then</th><th>decision</th><th>by</th>"
                 "<th>comment</th><th>outcome</th><th>run</th></tr>")
    for r in data.get("decided", []):
        parts.append(f"<tr><td>v{r['version']}</td><td>{'v' + str(r['champion_version']) if r['champion_version'] else '-'}"
                     f"</td><td class='{e(r['decision'])}'>{e(r['decision'])}</td><td>{e(r['responded_by'] or '')}</td>"
                     f"<td>{e(r['comment'] or '')}</td><td>{e(r['outcome'] or '')}</td><td>"
                     f"<a href='/dags/{dag}/runs/{e(r['run_id'])}' target='_top'>{e(r['run_id'])}</a></td></tr>")
    parts.append("</table>")
    return parts


def _canaries(spec: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The pipeline's canaries (``registry.rollouts``, newest first) with their newest check."""
    try:
        from airtrain.monitoring import canary

        wh = _warehouse(spec)
        return canary.list_rollouts(wh, spec, limit=10), None
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of a 500
        return [], _error_text(exc)


def _canaries_table(name: str, spec: Any, rows: list[dict[str, Any]]) -> list[str]:
    e = html.escape
    parts = ["<table><tr><th>status</th><th>candidate</th><th>champion</th><th>share</th><th>since</th>"
             "<th>last check</th><th>decided</th><th>reason</th></tr>"]
    for r in rows:
        chk = r.get("last_check") or {}
        check = "-"
        if chk:
            check = (f"{e(str(chk['evaluated_on']))}: {e(chk['decision'])} (n {chk['n_candidate']}/{chk['n_champion']}"
                     + (f", Δ {chk['diff']:+.4f} [{chk['ci_low']:+.4f}, {chk['ci_high']:+.4f}]"
                        if chk.get("diff") is not None else "") + ")")
        cls = "pending-approval" if r["status"] == "running" else ""
        parts.append(f"<tr class='{cls}'><td>{e(r['status'])}</td><td>v{r['candidate_version']}</td><td>"
                     f"{'v' + str(r['champion_version']) if r['champion_version'] else '-'}</td><td>"
                     f"{100 * float(r['fraction']):.0f}%</td><td>{e(str(r['started_on'] or ''))}</td><td>{check}</td>"
                     f"<td>{e(str(r['decided_on'] or ''))} {e(r['decided_by'] or '')}</td>"
                     f"<td>{e((r['reason'] or '')[:300])}</td></tr>")
    parts.append("</table>")
    return parts


def _holds(spec: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The pipeline's promotion holds (``registry.promotion_holds``, newest first)."""
    try:
        from airtrain.registry import status

        return status.promotion_holds(_warehouse(spec), spec, limit=10), None
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of a 500
        from airtrain.warehouse import redact_text

        return [], redact_text(f"{type(exc).__name__}: {exc}")[:300]


def _holds_table(name: str, spec: Any, rows: list[dict[str, Any]]) -> list[str]:
    e = html.escape
    now = rows[0]
    if now["action"] == "hold":
        parts = [f"<p class='promotion-hold retrain'>automatic promotions are HELD since {e(str(now['created_at'])[:16])} "
                 f"by {e(now['actor'])}: {e(now['reason'])} — challengers that pass the gate are recorded as held; "
                 "force_promote and rollback_version still work; release with <code>promotion_hold: release</code></p>"]
    else:
        parts = [f"<p class='promotion-hold passed'>automatic promotions are active (released "
                 f"{e(str(now['created_at'])[:16])} by {e(now['actor'])})</p>"]
    parts.append("<table><tr><th>when</th><th>action</th><th>by</th><th>reason</th></tr>")
    for r in rows:
        parts.append(f"<tr><td>{e(str(r['created_at'])[:19])}</td><td>{e(r['action'])}</td><td>{e(r['actor'])}</td>"
                     f"<td>{e((r['reason'] or '')[:300])}</td></tr>")
    parts.append("</table>")
    return parts


def render_index(specs: dict[str, Any], rows_for: Any, validations_for: Any = None, approvals_for: Any = None,
                 canaries_for: Any = None, holds_for: Any = None, broken: list[tuple[str, str]] | None = None) -> str:
    """The page; ``broken``: (spec file, error) of each spec that does not load - named at the top,
    while every other pipeline is listed as usual."""
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Validation and drift reports</title>",
             f"<style>{STYLE}</style></head><body><h1>Validation and drift reports</h1>",
             "<p class='muted'>Validation: every partition the <code>&lt;name&gt;_retrain</code> DAG validated "
             "(<code>monitoring.validation_runs</code>). Drift: the decisions of the <code>&lt;name&gt;_monitor</code> "
             "DAG (<code>monitoring.drift_decisions</code>, <code>monitoring.drift_metrics</code>).</p>"]
    if broken:
        parts.append("<h2 id='broken-specs' class='err'>Specs that do not load</h2><p class='muted'>Their DAGs are "
                     "import errors (DAGs → import errors in the UI) and do not run; every other pipeline does. "
                     "Fix the spec (docs/SPEC.md), then run <code>airtrain migrate</code>.</p>")
        for file_name, message in broken:
            parts.append(f"<h3 class='broken-spec'>{e(file_name)}</h3><pre class='err'>{e(message)}</pre>")
    for name, spec in sorted(specs.items()):
        parts.append(f"<h2 id='{e(name)}'>{e(name)}</h2>")
        parts.append(f"<p class='muted'>DAGs: <a href='/dags/{e(spec.retrain_dag_id)}' target='_top'>"
                     f"{e(spec.retrain_dag_id)}</a> · <a href='/dags/{e(spec.monitor_dag_id)}' target='_top'>"
                     f"{e(spec.monitor_dag_id)}</a> · <a class='model-cards' href='{PREFIX}/cards/{e(name)}'>"
                     "model cards</a></p>")
        sections = [("drift", "Drift decisions", rows_for, _decisions_table, "no monitoring runs yet")]
        if validations_for is not None:
            sections.append(("validation", "Validated partitions", validations_for, _validations_table,
                             "no validated partitions yet"))
        if approvals_for is not None and spec.promotion.approval == "required":
            sections.insert(0, ("approvals", "Promotion approvals", approvals_for, _approvals_table, ""))
        if canaries_for is not None and spec.rollout.strategy == "canary":
            sections.insert(0, ("canaries", "Canary rollouts", canaries_for, _canaries_table, "no canary yet"))
        if holds_for is not None:
            sections.insert(0, ("promotion-hold", "Automatic promotions", holds_for, _holds_table,
                                "active (never held; hold them with a retrain run's <code>promotion_hold: hold</code>)"))
        for kind, title, fetch_rows, table, empty in sections:
            parts.append(f"<h3 id='{e(name)}-{kind}'>{title}</h3>")
            rows, err = fetch_rows(spec)
            if err:
                parts.append(f"<p class='err'>cannot read them: {e(err)}</p>")
            elif not rows:
                parts.append(f"<p class='muted'>{empty}</p>")
            else:
                parts += table(name, spec, rows)
    parts.append("</body></html>")
    return "".join(parts)


def read_card(pipeline: str, version: int, specs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A version's model card (registry.model_cards), or HTTPException 404."""
    from airtrain.registry.cards import read

    specs = specs if specs is not None else _specs()
    if pipeline not in specs:
        raise HTTPException(status_code=404, detail="no such model card")
    try:
        card = read(_warehouse(specs[pipeline]), specs[pipeline], int(version))
    except Exception as exc:  # noqa: BLE001 - a redacted 503 instead of a 500 with the raw error in the log
        raise HTTPException(status_code=503, detail=f"cannot read the model card: {_error_text(exc)}") from None
    if card is None:
        raise HTTPException(status_code=404, detail="no such model card")
    return card


def render_card_list(pipeline: str) -> str:
    """The pipeline's model cards, newest version first."""
    from airtrain.registry.cards import list_cards

    e = html.escape
    specs = _specs()
    if pipeline not in specs:
        raise HTTPException(status_code=404, detail="no such pipeline")
    try:
        rows = list_cards(_warehouse(specs[pipeline]), specs[pipeline])
    except Exception as exc:  # noqa: BLE001 - a redacted 503 instead of a 500 with the raw error in the log
        raise HTTPException(status_code=503, detail=f"cannot read the model cards: {_error_text(exc)}") from None
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Model cards {e(pipeline)}</title>"
             f"<style>{STYLE}</style></head><body><h1>Model cards: {e(pipeline)}</h1><table><tr><th>version</th>"
             "<th>estimator</th><th>champion</th><th>gate</th><th>status</th><th>updated</th><th>JSON</th></tr>"]
    for r in rows:
        v = int(r["version"])
        gate = {True: "passed", False: "refused"}.get(r["gate_passed"], "-")
        parts.append(f"<tr><td><a href='{PREFIX}/cards/{e(pipeline)}/{v}'>v{v}</a></td><td>{e(r['estimator'] or '')}"
                     f"</td><td>{'yes' if r['is_champion'] else ''}</td><td>{gate}</td>"
                     f"<td>{'rejected' if r.get('rejected') else ''}</td><td>{e(str(r['updated_at']))}"
                     f"</td><td><a href='{PREFIX}/cards/{e(pipeline)}/{v}.json'>json</a></td></tr>")
    parts.append("</table></body></html>")
    return "".join(parts)


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import get_user  # Airflow's own login check; no fallback

    app = FastAPI(title="airtrain reports", docs_url=None, redoc_url=None, openapi_url=None)
    auth = Depends(get_user)

    @app.get("/", response_class=HTMLResponse)
    def index(user: Any = auth) -> HTMLResponse:
        from pathlib import Path

        scan = _scan()
        specs = {s.name: s for s in scan.specs if can_read(user, s.monitor_dag_id) or can_read(user, s.retrain_dag_id)}
        # a broken spec is named to the users who may read its DAGs (by the ids its file name gives)
        broken = [(Path(err.path).name, _error_text(err, 3000).removeprefix(f"{type(err).__name__}: "))
                  for err in scan.errors
                  if any(can_read(user, f"{Path(err.path).stem}_{kind}") for kind in ("retrain", "monitor"))]
        return HTMLResponse(render_index(specs, _allowed(user, _rows, "drift"),
                                         _allowed(user, _validations, "validation"), _approvals,
                                         _allowed(user, _canaries, "drift"), _allowed(user, _holds, "validation"),
                                         broken=broken))

    def serve(user: Any, pipeline: str, kind: str, report_id: str) -> HTMLResponse:
        specs = _specs()
        if pipeline in specs and kind in REPORT_CSP and not can_read(user, _dag_of(specs[pipeline], kind)):
            raise HTTPException(status_code=403, detail="Forbidden")
        body = read_report(pipeline, kind, report_id, specs)
        return report_response(kind, body)

    def card_allowed(user: Any, pipeline: str) -> None:
        specs = _specs()
        if pipeline in specs and not can_read(user, specs[pipeline].retrain_dag_id):
            raise HTTPException(status_code=403, detail="Forbidden")

    @app.get("/cards/{pipeline}", response_class=HTMLResponse)
    def cards(pipeline: str, user: Any = auth) -> HTMLResponse:
        card_allowed(user, pipeline)
        return HTMLResponse(render_card_list(pipeline))

    @app.get("/cards/{pipeline}/{version}.json")
    def card_json(pipeline: str, version: int, user: Any = auth) -> dict[str, Any]:
        card_allowed(user, pipeline)
        return read_card(pipeline, version)

    @app.get("/cards/{pipeline}/{version}", response_class=HTMLResponse)
    def card_html(pipeline: str, version: int, user: Any = auth) -> HTMLResponse:
        from airtrain.registry.cards import render_html

        card_allowed(user, pipeline)
        return HTMLResponse(render_html(read_card(pipeline, version)))

    @app.get("/reports/{pipeline}/{kind}/{report_id}")
    def report(pipeline: str, kind: str, report_id: str, user: Any = auth) -> HTMLResponse:
        return serve(user, pipeline, kind, report_id)

    @app.get("/reports/{pipeline}/{report_id}")
    def drift_report(pipeline: str, report_id: str, user: Any = auth) -> HTMLResponse:  # links in older alerts
        return serve(user, pipeline, "drift", report_id)

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
