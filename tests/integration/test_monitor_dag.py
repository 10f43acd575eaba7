"""The monitor DAG on a real warehouse: decisions, metrics, reports, a deduplicated retrain
trigger, alerts, and the UI page that lists and opens the reports."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from airtrain.monitoring.windows import retrain_run_id
from airtrain.simulate import Scenario

from tests.integration.dagtest import TEST_SPEC, Project, fetch, merged, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 3, 1)
HISTORY = 12
ROWS = 500
STABLE = START + dt.timedelta(days=HISTORY)  # after the champion's window, before the drift
DRIFT = START + dt.timedelta(days=HISTORY + 4)  # drift starts the day after STABLE; full after 3 days
BLOCKED = START + dt.timedelta(days=HISTORY + 10)  # no data landed: the validate-link test writes an empty file
SPEC = merged(TEST_SPEC, {
    "training": {"cadence": "on_trigger", "min_rows": 1000},
    "monitoring": {"min_rows": 300, "trigger": {"persistence": 1, "cooldown_days": 7}}})


def _score_two_days(p: Project) -> None:
    for d in (STABLE, DRIFT):
        dr, states = p.run({"date": str(d)})  # ingest, validate, score (no training: on_trigger)
        assert states["train"] == "skipped" and states["publish_predictions"] == "success", states


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, pg_server, airflow_db):
    """A champion trained on 12 stable days, then covariate drift; the stable day and a drifted
    day are scored. A copy of a session template (built once)."""
    p, mp = template_project(
        tmp_path_factory, pg_server, "mon", overrides=SPEC, start=START, days=HISTORY + 6, rows=ROWS,
        scenario=Scenario("covariate_drift", drift="covariate", drift_start=HISTORY + 1),
        bootstrap={"date": str(START), "end_date": str(START + dt.timedelta(days=HISTORY - 1)), "force_train": True},
        setup=_score_two_days)
    yield p
    mp.undo()


def run_monitor(p: Project, date: dt.date):
    from airtrain_airflow.factory import build_monitor_dag

    dr = build_monitor_dag(p.spec()).test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(date)})
    return dr, {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def decision(p: Project, date: dt.date) -> tuple:
    rows = fetch(p.warehouse, "SELECT decision, reason, report_id, report_path, triggered_run_id, drift_share "
                              "FROM monitoring.drift_decisions WHERE pipeline = 'churn' AND window_end = %s", (date,))
    assert len(rows) == 1
    return rows[0]


def test_stable_window_is_quiet_and_stored(monitored):
    dr, states = run_monitor(monitored, STABLE)
    assert states == {"drift_check": "success", "retrain_due": "success", "trigger_retrain": "skipped",
                      "notify": "success"}
    dec, reason, rep_id, rep_path, triggered, share = decision(monitored, STABLE)
    assert dec == "no_drift" and triggered is None and share < 0.3
    metrics = fetch(monitored.warehouse, "SELECT metric, column_name, value, threshold, drifted, model_version "
                                         "FROM monitoring.drift_metrics WHERE window_end = %s", (STABLE,))
    by = {(m[0], m[1]): m for m in metrics}
    assert len(by) == len(metrics)  # one row per metric and column
    assert {c for (m, c) in by if m.startswith("drift.")} == set(monitored.spec().feature_names)
    assert ("prediction_drift.psi", "prediction") in by and ("drift_share", "") in by
    assert by[("rows", "")][2] == ROWS and by[("rows", "")][5] == 1
    assert rep_path.endswith(f"{rep_id}.html") and "<html" in open(rep_path).read(4000).lower()
    # a re-run of the window replaces, never duplicates
    run_monitor(monitored, STABLE)
    again = fetch(monitored.warehouse, "SELECT count(*) FROM monitoring.drift_metrics WHERE window_end = %s",
                  (STABLE,))
    assert again[0][0] == len(metrics)


def test_window_without_data_is_insufficient_not_drift(monitored):
    empty = START + dt.timedelta(days=HISTORY + 1)  # never ingested
    dr, states = run_monitor(monitored, empty)
    assert states["trigger_retrain"] == "skipped"
    dec, reason, rep_id, *_ = decision(monitored, empty)
    assert dec == "insufficient_data" and "fewer than monitoring.min_rows" in reason and rep_id is None


def test_drift_triggers_one_retrain_even_when_fired_twice(monitored, caplog):
    from airtrain_dev.demo import count_runs, queued_trigger_conf

    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    dr, states = run_monitor(monitored, DRIFT)
    assert states["trigger_retrain"] == "success", states
    dec, reason, rep_id, rep_path, triggered, share = decision(monitored, DRIFT)
    assert dec == "retrain" and "monthly_charges" in reason
    assert triggered == retrain_run_id(DRIFT) == f"drift__{DRIFT}"
    conf = queued_trigger_conf("churn_retrain", triggered)
    assert conf["date"] == str(DRIFT) and conf["force_train"] is True
    assert conf["trigger_reason"].startswith("drift: ") and conf["drift_report_id"] == rep_id
    # found by the soak: with a logical date of "now", a retrain DAG whose schedule.start_date is later
    # got a run without any task instance (Airflow creates none before a task's start_date), which
    # "succeeded" at once; without a logical date every task is created, whatever the start date
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        triggered_run = session.query(DagRun).filter(DagRun.dag_id == "churn_retrain",
                                                     DagRun.run_id == triggered).one()
        n_tis = session.query(TaskInstance).filter(TaskInstance.dag_id == "churn_retrain",
                                                   TaskInstance.run_id == triggered).count()
        assert triggered_run.logical_date is None and n_tis > 0, (triggered_run.logical_date, n_tis)
    assert any("retrain triggered" in r.getMessage() for r in caplog.records)
    # the same window again (a retry, a manual re-run): still one retrain run
    dr, states = run_monitor(monitored, DRIFT)
    assert states["trigger_retrain"] == "skipped", states
    assert count_runs("churn_retrain", triggered) == 1
    # the triggered run's conf is valid for the retrain DAG and trains despite cadence on_trigger
    dr, states = monitored.run(conf)
    assert states["train"] == "success" and states["promote"] == "success", states


def test_ui_lists_decisions_and_serves_reports_to_logged_in_users_only(monitored):
    import re

    from airflow.api_fastapi.core_api.security import get_user
    from airtrain_airflow.ui import create_app
    from fastapi.testclient import TestClient

    run_monitor(monitored, STABLE)
    rep_id = decision(monitored, STABLE)[2]
    app = create_app()
    anon = TestClient(app)
    assert anon.get("/").status_code == 401
    assert anon.get(f"/reports/churn/drift/{rep_id}").status_code == 401
    assert anon.get(f"/reports/churn/validation/{STABLE}").status_code == 401
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="vera", role="viewer")
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200
    assert "churn_monitor" in page.text and rep_id in page.text and "no_drift" in page.text
    # the drift report (linked from the page), with a title saying what it is and what was decided
    assert f"href='/airtrain/reports/churn/drift/{rep_id}'" in page.text
    rep = client.get(f"/reports/churn/drift/{rep_id}")
    assert rep.status_code == 200 and "<html" in rep.text.lower()
    title = re.search(r"<title>(.*?)</title>", rep.text).group(1)
    champion = fetch(monitored.warehouse, "SELECT model_version FROM monitoring.drift_decisions "
                                          "WHERE window_end = %s", (STABLE,))[0][0]
    assert title == f"churn drift report — {STABLE} — champion v{champion}: no_drift", title
    assert client.get(f"/reports/churn/{rep_id}").text == rep.text  # the older address still works
    # every validated partition is listed with its validation report
    assert f"href='/airtrain/reports/churn/validation/{STABLE}'" in page.text
    val = client.get(f"/reports/churn/validation/{STABLE}")
    assert val.status_code == 200 and f"<title>churn validation {STABLE}</title>" in val.text
    for bad in ("../../etc/passwd", "..%2F..%2Fx", "nope"):
        assert client.get(f"/reports/churn/drift/{bad}").status_code == 404
        assert client.get(f"/reports/churn/validation/{bad}").status_code == 404
    assert client.get(f"/reports/other/drift/{rep_id}").status_code == 404
    assert client.get(f"/reports/churn/secrets/{rep_id}").status_code == 404


def stored_link(dr, task_id: str, link) -> str | None:
    """The URL Airflow stored for a task's extra link (computed when the task finished; the API and
    the UI read it from there)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dr.run_id, key=link.xcom_key, dag_ids=dr.dag_id,
                                                 task_ids=task_id)).first()
        return XComModel.deserialize_value(row) if row is not None else None


def test_the_validate_task_links_to_its_report(monitored):
    from airtrain_airflow.operators.validation import ValidationReportLink

    dr, states = monitored.run({"date": str(STABLE)})
    assert states["validate"] == "success", states
    assert stored_link(dr, "validate", ValidationReportLink()) == f"/airtrain/reports/churn/validation/{STABLE}"
    # a blocked partition fails the task, and the link still leads to the report that says why
    (monitored.landing / f"{BLOCKED}.csv").write_text("customer_id,as_of_date\n")
    dr, states = monitored.run({"date": str(BLOCKED)})
    assert states["validate"] == "failed", states
    assert stored_link(dr, "validate", ValidationReportLink()) == f"/airtrain/reports/churn/validation/{BLOCKED}"
