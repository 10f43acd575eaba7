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
    # issue 24: the champion's performance estimated before labels, from the calibrator stored at evaluation
    (kind, error, cal_rows), = fetch(monitored.warehouse, "SELECT kind, error, n_rows FROM "
                                     "registry.performance_estimators WHERE pipeline = 'churn' AND version = 1")
    assert kind == "calibrator" and error is None and cal_rows > 0
    est = {r[2]: r for r in fetch(monitored.warehouse, "SELECT role, model_version, metric, method, estimate, band_low, "
                                  "band_high, baseline, realized, n_rows FROM monitoring.performance_estimates "
                                  "WHERE pipeline = 'churn' AND window_end = %s", (STABLE,))}
    role, v, _, method, value, low, high, baseline, realized, n = est["roc_auc"]
    assert (role, v, method, n) == ("champion", 1, "cbpe", ROWS) and realized is None  # labels not due yet
    assert low < value < high and abs(value - baseline) < 0.05, est["roc_auc"]  # a stable day: near its evaluation
    assert by[("estimated.roc_auc", "")][2] == pytest.approx(value)
    assert by[("estimated_drop.roc_auc", "")][4] is None  # estimated_drop_abs unset: recorded, never a signal
    # a re-run of the window replaces, never duplicates
    run_monitor(monitored, STABLE)
    again = fetch(monitored.warehouse, "SELECT count(*) FROM monitoring.drift_metrics WHERE window_end = %s",
                  (STABLE,))
    assert again[0][0] == len(metrics)
    assert fetch(monitored.warehouse, "SELECT count(*), min(estimate), max(estimate) FROM "
                 "monitoring.performance_estimates WHERE window_end = %s AND metric = 'roc_auc'", (STABLE,)
                 ) == [(1, value, value)]  # same sample, same seeded band: the same estimate


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


def test_replay_recomputes_the_live_decisions_and_tries_other_thresholds(monitored, capsys):
    """Issue 24: the stored windows (no_drift, insufficient_data, retrain) re-decided read-only; with the live
    spec exactly as decided, with feature_drift: alert the drifted window is alert-only and nothing retrains."""
    from airtrain.monitoring import replay as rp
    from airtrain.replay import main as replay_main
    from airtrain.replay import other_spec

    spec, wh = monitored.spec(), monitored.warehouse
    path = monitored.spec_dir / "churn.yaml"
    tables = ("drift_decisions", "drift_metrics", "performance_estimates")

    def state():
        return [fetch(wh, f"SELECT count(*), max(created_at) FROM monitoring.{t}") for t in tables]

    before = state()
    live = dict(fetch(wh, "SELECT window_end, decision FROM monitoring.drift_decisions WHERE pipeline = 'churn'"))
    assert set(live.values()) >= {"no_drift", "insufficient_data", "retrain"}, live
    history = rp.load_history(wh, spec)
    assert history["read_only"] is True  # the replay's one transaction is READ ONLY
    days = rp.replay(wh, spec, spec, history=history)
    assert {d.window_end: d.would for d in days} == live  # the live decisions, exactly
    assert [d.window_end for d in days if d.retrain] == [DRIFT] and not any(d.changed for d in days)
    # the realized value beside the estimate, filled by the first check after the window's labels were due
    (est, low, high, realized, n, on), = fetch(wh, "SELECT estimate, band_low, band_high, realized, realized_rows, "
                                               "realized_on FROM monitoring.performance_estimates WHERE "
                                               "window_end = %s AND metric = 'roc_auc'", (STABLE,))
    assert n == ROWS and on == STABLE + dt.timedelta(days=1) and abs(realized - est) < 0.1, (est, realized)
    assert next(d for d in days if d.window_end == STABLE).realized == realized
    alert = {d.window_end: d for d in rp.replay(wh, spec, other_spec(path, None, [
        "monitoring.trigger.feature_drift=alert"]), history=history)}
    assert alert[DRIFT].would == "drift_alert" and alert[DRIFT].changed and not any(d.retrain for d in alert.values())
    assert alert[STABLE].would == "no_drift"
    with pytest.raises(rp.ReplayError, match="method"):  # another drift method: the stored scores cannot say
        rp.replay(wh, spec, other_spec(path, None, ["monitoring.default_method=ks"]), history=history)
    # the command line prints the comparison and writes nothing
    assert replay_main(["churn", "--spec-dir", str(monitored.spec_dir), "--url", wh.uri,
                        "--set", "monitoring.trigger.feature_drift=alert"]) == 0
    out = capsys.readouterr().out
    assert f"{DRIFT} " in out and "drift_alert *" in out and "retrains: 1 live, 0 with these settings" in out
    assert state() == before


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
    # issue 24: the trend chart (inline SVG, no script) marks the triggered retrain and the promotion it led to
    assert "<svg class='trend'" in page.text and "<g class='event retrain'>" in page.text
    assert "<g class='event promotion'>" in page.text and "estimated roc_auc" in page.text
    card = client.get("/cards/churn/1")  # the model card shows the version's calibration curve
    assert card.status_code == 200 and "Calibration (estimated performance before labels)" in card.text
    assert "<polyline" in card.text and "Brier score of the raw scores" in card.text
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


def test_alert_only_drift_is_recorded_alerted_once_and_retrains_nothing(monitored, caplog):
    """``monitoring.trigger.feature_drift: alert`` through a real monitor run (the drifted window again, last in
    this module): decided ``drift_alert``, alerted once - a re-run of the window does not alert again - and no
    retrain is triggered."""
    from airtrain_dev.demo import count_runs

    path = monitored.spec_dir / f"{monitored.name}.yaml"
    saved = path.read_text()
    runs_before = count_runs("churn_retrain", retrain_run_id(DRIFT))
    try:
        monitored.respec(SPEC, {"monitoring": {"trigger": {"feature_drift": "alert"}}})
        caplog.set_level(logging.WARNING, logger="airtrain.alerts")
        dr, states = run_monitor(monitored, DRIFT)
        assert states["trigger_retrain"] == "skipped" and states["notify"] == "success", states
        dec, reason, *_ = decision(monitored, DRIFT)
        assert dec == "drift_alert" and "monthly_charges" in reason
        sent = [r.getMessage() for r in caplog.records if "alert only" in r.getMessage()]
        assert len(sent) == 1 and str(DRIFT) in sent[0], sent
        assert fetch(monitored.warehouse, "SELECT details->'alert' ? 'alerted' FROM monitoring.drift_decisions "
                                          "WHERE pipeline = 'churn' AND window_end = %s", (DRIFT,)) == [(True,)]
        caplog.clear()
        dr, states = run_monitor(monitored, DRIFT)  # the same window again: still recorded, not alerted twice
        assert decision(monitored, DRIFT)[0] == "drift_alert"
        assert not [r for r in caplog.records if "alert only" in r.getMessage()]
        assert count_runs("churn_retrain", retrain_run_id(DRIFT)) == runs_before
    finally:
        path.write_text(saved)
