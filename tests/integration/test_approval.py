"""Human approval before promotion (issue 12), with real retrain runs (dag.test()) and Airflow's own
HITL machinery: the request is answered through the REST API of Airflow's FastAPI app (the route the
UI's "Required actions" page calls, with a real JWT and the auth manager's checks), or not at all and
the scheduler's own timeout sweep resolves it. No part of HITL is mocked.

dag.test() must run in the main thread and waits while a task is awaiting input; a responder thread
answers from outside, as a person would."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import types

import pytest

from tests.integration.dagtest import TEST_SPEC, fetch, merged, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 5, 1)
HISTORY = 10
DAY = START + dt.timedelta(days=HISTORY + 1)  # the challenger is trained as of this day
SPEC = merged(TEST_SPEC, {
    "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.5}], "approval": "required",
                  "approvers": ["bob", "carol"], "approval_timeout_hours": 12},
    "scoring": {"shadow": False, "partitions": 1},
    "schedule": {"max_active_runs": 2},
})
BOOTSTRAP = {"date": str(START), "end_date": str(START + dt.timedelta(days=HISTORY - 1)), "force_train": True,
             "force_promote": True, "reason": "the first champion (no one to compare with)"}


@pytest.fixture
def project(tmp_path_factory, pg_server, airflow_db):
    """A champion (v1, promoted by force at bootstrap) and two more landed days; a copy per test."""
    p, mp = template_project(tmp_path_factory, pg_server, "approval", overrides=SPEC, start=START,
                             days=HISTORY + 2, rows=250, bootstrap=BOOTSTRAP)
    yield p
    mp.undo()


@pytest.fixture(scope="module")
def api():
    """Airflow's FastAPI app (core API + auth) and tokens, built before any responder thread starts
    (SQLAlchemy mapper configuration must not race a thread)."""
    import airflow.models
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import configure_mappers

    airflow.models.import_all_models()
    import airflow.jobs.scheduler_job_runner  # noqa: F401 - imported before the thread, like the app
    import airflow.models.hitl  # noqa: F401
    from airflow.api_fastapi.core_api.security import get_user
    from airtrain_airflow.ui import create_app as create_ui

    configure_mappers()
    purge_cached_app()
    client = TestClient(create_app("core"))
    ui = create_ui()
    ui.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="vera", role="viewer")  # may read DAGs

    def token(user: str, role: str = "user") -> dict[str, str]:
        jwt = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=role))
        return {"Authorization": f"Bearer {jwt}"}

    yield types.SimpleNamespace(client=client, token=token, ui=TestClient(ui))
    purge_cached_app()


def _pending(dag_id: str, timeout: float = 240.0, scored: bool = True):
    """(run_id, task_id, trigger_timeout) of the HITL request once it waits - after today's
    predictions are published (scoring must not wait for the human); with ``scored=False`` (no champion
    yet) once ``begin_scoring`` skipped the date."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as s:
            row = s.execute(select(TI.run_id, TI.task_id, TI.trigger_timeout).join(HITLDetail, HITLDetail.ti_id == TI.id)
                            .where(TI.dag_id == dag_id, HITLDetail.responded_at.is_(None),
                                   TI.state == TaskInstanceState.AWAITING_INPUT)).first()
            if row is not None:
                published = s.scalar(select(TI.state).where(
                    TI.dag_id == dag_id, TI.run_id == row[0],
                    TI.task_id == ("publish_predictions" if scored else "begin_scoring")))
                if published == (TaskInstanceState.SUCCESS if scored else TaskInstanceState.SKIPPED):
                    return row
        time.sleep(0.5)
    raise TimeoutError("no approval request appeared")


def run_with_responder(project, respond, conf: dict | None = None, scored: bool = True) -> tuple:
    """A real retrain run (main thread); ``respond(run_id, task_id, trigger_timeout)`` answers from a thread."""
    seen: dict = {}
    dag_id = project.spec().retrain_dag_id

    def responder() -> None:
        try:
            seen["request"] = req = _pending(dag_id, scored=scored)
            seen["response"] = respond(*req)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            seen["error"] = exc
            logging.getLogger(__name__).exception("responder failed")
        finally:
            _unstick(dag_id, failed="error" in seen)

    t = threading.Thread(target=responder, daemon=True)
    t.start()
    dr, states = project.run(conf or {"date": str(DAY), "force_train": True})
    t.join(30)
    if "error" in seen:
        raise seen["error"]
    return dr, states, seen


def _unstick(dag_id: str, failed: bool) -> None:
    """Never leave dag.test() waiting forever: a request still waiting a while after the answer (or
    after the responder failed) is failed, so the test fails instead of hanging."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import func, select, update

    awaiting = (TI.dag_id == dag_id, TI.state == TaskInstanceState.AWAITING_INPUT)
    deadline = time.monotonic() + (300 if failed else 60)
    while time.monotonic() < deadline:
        with create_session() as s:
            if not failed and not s.scalar(select(func.count()).select_from(TI).where(*awaiting)):
                return  # answered: the task resumed
            if failed and s.execute(update(TI).where(*awaiting).values(state=TaskInstanceState.FAILED)).rowcount:
                return
        time.sleep(0.5)
    with create_session() as s:
        s.execute(update(TI).where(*awaiting).values(state=TaskInstanceState.FAILED))


def _patch(api, run_id: str, task_id: str, user: str, option: str, comment: str):
    dag_id = "churn_retrain"
    return api.client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
                            json={"chosen_options": [option], "params_input": {"comment": comment}},
                            headers=api.token(user))


def _champion(p) -> int:
    return fetch(p.warehouse, "SELECT version FROM registry.champions WHERE pipeline = 'churn'")[0][0]


def _approvals(p) -> list[tuple]:
    return fetch(p.warehouse, "SELECT version, champion_version, decision, responded_by, comment, promoted, outcome "
                              "FROM registry.approvals WHERE pipeline = 'churn'")


def test_approved_through_the_rest_api_promotes_with_the_approver_in_the_log(project, api):
    from airtrain_airflow.factory import build_retrain_dag

    from tests.integration.tabletouch import check_lineage, record_table_touches

    before = _champion(project)

    def respond(run_id, task_id, _timeout):
        request = api.client.get(f"/api/v2/dags/churn_retrain/dagRuns/{run_id}/hitlDetails",
                                 params={"response_received": False}, headers=api.token("bob"))
        assert request.status_code == 200, request.text
        (item,) = request.json()["hitl_details"]
        # someone not in promotion.approvers is refused by Airflow itself
        refused = _patch(api, run_id, task_id, "dave", "Approve", "me too")
        approved = _patch(api, run_id, task_id, "bob", "Approve", "looks good on every slice")
        return item, refused.status_code, refused.text, approved.status_code, approved.json()

    with record_table_touches(project.warehouse.uri) as touches:  # what each task read and wrote
        dr, states, seen = run_with_responder(project, respond)
    item, refused_code, refused_text, code, body = seen["response"]
    assert refused_code == 403 and "not a respondent" in refused_text
    assert code == 200 and body["chosen_options"] == ["Approve"] and body["responded_by"]["id"] == "bob"
    assert item["subject"].startswith("Promote churn v") and "| roc_auc (primary) |" in item["body"]
    assert "**Gate: passed**" in item["body"] and "contract_type=" in item["body"]  # metrics, gate, slices
    assert set(item["params"]) == {"comment"}  # the form asks for a comment, not the DAG's run params
    assert item["assigned_users"] == [{"id": "bob", "name": "bob"}, {"id": "carol", "name": "carol"}]
    assert str(dr.state) == "success", states
    assert states["approve_promotion"] == "success" and states["promote_approved"] == "success", states
    new = _champion(project)
    assert new != before
    # the day was scored by the champion of the time, while the request waited
    assert fetch(project.warehouse, "SELECT DISTINCT model_version FROM predictions.churn WHERE as_of_date = %s",
                 (DAY,)) == [(before,)]
    log = fetch(project.warehouse, "SELECT from_version, to_version, action, actor, reason, metrics->'approval' "
                                   "FROM registry.promotion_log WHERE pipeline = 'churn' ORDER BY id")
    assert log[-1][:4] == (before, new, "promote", "user:bob")
    assert log[-1][4].startswith("approved by bob: looks good on every slice (gate: gate passed")
    assert log[-1][5] == {"by": "bob", "comment": "looks good on every slice"}
    assert _approvals(project) == [(new, before, "approved", "bob", "looks good on every slice", True,
                                    "promoted: approved by bob")]
    # issue 20 item 7: the cards are rebuilt after the approval - the new champion's and the old one's
    from airtrain.registry import cards

    card = cards.read(project.warehouse, project.spec(), new)
    assert card["is_champion"] is True and "(champion)</h1>" in cards.render_html(card)
    assert [(p["action"], p["actor"], p["to_version"]) for p in card["promotions"]] == [("promote", "user:bob", new)]
    assert [(g["run_id"], g["outcome"]) for g in card["gate_decisions"]] == [(dr.run_id, "promoted (approved by bob)")]
    assert cards.read(project.warehouse, project.spec(), before)["is_champion"] is False
    # item 8: docs/RELEASING.md's query for approved promotions returns the approved one only (not the bootstrap's
    # forced promotion, nor the gate's); the approver is the actor, who started the run is beside it
    assert [r[1:4] for r in fetch(project.warehouse, _doc_query("-- approved promotions"))] == [
        (before, new, "user:bob")]
    assert fetch(project.warehouse, "SELECT triggered_by FROM registry.promotion_log ORDER BY id DESC LIMIT 1") == [
        ("user:dag_test",)]

    # the approval tasks' OpenLineage datasets are the tables PostgreSQL saw them read and write
    problems = check_lineage(touches, build_retrain_dag(project.spec()), ["approve_promotion", "promote_approved"])
    assert not problems, "\n".join(problems)


def _doc_query(comment: str) -> str:
    """The SQL statement under ``comment`` in docs/RELEASING.md."""
    from tests.integration.dagtest import ROOT

    text = (ROOT / "docs" / "RELEASING.md").read_text()
    tail = text[text.index(comment):].split("\n", 1)[1]
    return tail[:tail.index(";")]


def test_rejected_keeps_the_champion_and_logs_who_and_why(project, api):
    before = _champion(project)
    n_log = len(fetch(project.warehouse, "SELECT id FROM registry.promotion_log"))

    def respond(run_id, task_id, _timeout):
        page = api.ui.get("/").text  # the UI page lists the pending request with a link to answer it
        code = _patch(api, run_id, task_id, "carol", "Reject", "worse for month-to-month contracts").status_code
        return page, code

    dr, states, seen = run_with_responder(project, respond)
    page, code = seen["response"]
    assert code == 200
    assert "class='pending-approval'" in page and f"/runs/{dr.run_id}/tasks/approve_promotion/required_actions" in page
    after = api.ui.get("/").text
    assert "no approval is pending" in after and "worse for month-to-month contracts" in after
    assert str(dr.state) == "success", states
    assert states["approve_promotion"] == "success" and states["promote_approved"] == "skipped", states
    assert states["publish_predictions"] == "success"
    assert _champion(project) == before
    assert len(fetch(project.warehouse, "SELECT id FROM registry.promotion_log")) == n_log
    ((version, champ, decision, who, comment, promoted, outcome),) = _approvals(project)
    assert (champ, decision, who, comment, promoted) == (before, "rejected", "carol",
                                                         "worse for month-to-month contracts", False)
    assert outcome == "not promoted: rejected by carol: worse for month-to-month contracts"
    gate = fetch(project.warehouse, "SELECT metrics->'approval'->>'decision' FROM registry.model_versions "
                                    "WHERE pipeline = 'churn' AND version = %s", (version,))
    assert gate == [("rejected",)]


def test_nobody_answers_the_scheduler_times_it_out_and_nothing_is_promoted(project):
    """response_timeout is applied by the scheduler only (dag.test() never does): a short timeout, then
    the scheduler's own sweep (SchedulerJobRunner.check_awaiting_input_timeouts) once it has passed."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    project.respec(SPEC, {"promotion": {"approval_timeout_hours": 0.0005}})  # 1.8 s
    before = _champion(project)

    def respond(run_id, task_id, trigger_timeout):
        assert trigger_timeout is not None
        while dt.datetime.now(dt.UTC) <= trigger_timeout:
            time.sleep(0.2)
        SchedulerJobRunner.check_awaiting_input_timeouts(types.SimpleNamespace(log=logging.getLogger("sweep")))
        return trigger_timeout

    dr, states, seen = run_with_responder(project, respond)
    assert str(dr.state) == "success", states
    assert states["approve_promotion"] == "success" and states["promote_approved"] == "skipped", states
    assert _champion(project) == before
    ((_, champ, decision, who, comment, promoted, outcome),) = _approvals(project)
    assert (champ, decision, who, comment, promoted) == (before, "timed_out", None, None, False)
    assert "nobody answered" in outcome


def test_approved_with_a_canary_rollout_starts_the_canary_not_a_promotion(project, api):
    """``promotion.approval: required`` and ``rollout.strategy: canary`` together: the approved
    challenger becomes the canary candidate (``registry.rollouts``, the approver as its author); the
    champion and the promotion log stay as they were."""
    project.respec(SPEC, {"rollout": {"strategy": "canary", "canary_fraction": 0.2}})
    before = _champion(project)
    n_log = len(fetch(project.warehouse, "SELECT id FROM registry.promotion_log"))
    dr, states, seen = run_with_responder(
        project, lambda run_id, task_id, _t: _patch(api, run_id, task_id, "carol", "Approve", "canary first").json())
    assert str(dr.state) == "success", states
    assert seen["response"]["chosen_options"] == ["Approve"] and seen["response"]["responded_by"]["id"] == "carol"
    assert _champion(project) == before
    assert len(fetch(project.warehouse, "SELECT id FROM registry.promotion_log")) == n_log
    (cand, champ, status, by, reason), = fetch(
        project.warehouse, "SELECT candidate_version, champion_version, status, decided_by, reason FROM "
                           "registry.rollouts WHERE pipeline = 'churn'")
    assert (champ, status, by) == (before, "running", "user:carol") and cand != before
    assert "approved by carol: canary first" in reason
    assert _approvals(project) == [(cand, before, "approved", "carol", "canary first", False,
                                    "canary started: approved by carol")]


def _history(p) -> None:
    """Template setup: FIRST_DAYS landed days ingested and validated, no model yet (a new pipeline)."""
    from airtrain.steps import retrain
    from airtrain.steps.schema import apply_schema

    spec, wh = p.spec(), p.warehouse
    apply_schema(wh, spec)
    dates = [START + dt.timedelta(days=i) for i in range(FIRST_DAYS - 1)]
    retrain.ingest(wh, spec, dates, "history", p.root)
    retrain.validate(wh, spec, dates, "history", today=dates[-1], reports_root=p.root / "reports")


FIRST_DAYS = 5


@pytest.fixture
def fresh(tmp_path_factory, pg_server, airflow_db):
    """A new pipeline: 4 validated days, a 5th landed, no model (labels one day late: 2 training days, 2 holdout)."""
    p, mp = template_project(tmp_path_factory, pg_server, "approval_first", overrides=SPEC, start=START,
                             days=FIRST_DAYS, rows=250, setup=_history)
    yield p
    mp.undo()


def test_the_first_model_waits_for_approval_and_its_date_is_scored_once_approved(fresh, api):
    """Issue 20 item 10: no champion, so nobody can score the date while the first model waits for its
    approval (begin_scoring skips); once approved it is the champion and ``score_approved`` scores the
    date, announcing it to the monitor like ``publish_predictions``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    day = START + dt.timedelta(days=FIRST_DAYS - 1)
    dr, states, seen = run_with_responder(
        fresh, lambda run_id, task_id, _t: _patch(api, run_id, task_id, "carol", "Approve", "first model").json(),
        conf={"date": str(day), "force_train": True}, scored=False)
    assert str(dr.state) == "success", states
    assert states["begin_scoring"] == "skipped" and states["publish_predictions"] == "skipped", states
    assert states["promote_approved"] == "success" and states["score_approved"] == "success", states
    assert _champion(fresh) == 1
    assert fetch(fresh.warehouse, "SELECT model_version, count(*), min(run_id) FROM predictions.churn "
                                  "WHERE as_of_date = %s GROUP BY 1", (day,)) == [(1, 250, dr.run_id)]
    with create_session() as s:
        extras = s.scalars(select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id).where(
            AssetModel.name == "airtrain.churn.predictions", AssetEvent.source_run_id == dr.run_id,
            AssetEvent.source_task_id == "score_approved")).all()
    assert [(e["date"], e["model_version"], e["rows"]) for e in extras] == [(str(day), 1, 250)]
