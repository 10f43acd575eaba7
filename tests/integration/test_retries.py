"""Retries the way Airflow makes them: the same task instance of the same DAG run, ``try_number``
+ 1 - not a new run. Each step commits its work, then fails before it can report success (a
failpoint in ``raise`` mode right after the commit, fired once: ``AIRTRAIN_FAILPOINT_ONCE``); the
task is retried in the same run, recognises its own committed work and succeeds, and the effect
exists exactly once.

The mechanism: ``dag.test()`` (Airflow 3.3, ``airflow/sdk/definitions/dag.py``) loops over
``DagRun.update_state()``, which hands back a failed task that has retries left (``UP_FOR_RETRY``)
once its retry delay has passed; the loop increments its ``try_number`` and runs it again - the
scheduler's own path, in one process. The spec's retries (2) and a 0.6 s first retry delay apply.

Also here: the monitor records a retrain run, its cooldown and its alert only once Airflow has
the run; a trigger that fails leaves no cooldown and alerts that it failed.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from airtrain import invariants

from tests.integration import test_monitor_dag as mon
from tests.integration import test_run_plan as plan
from tests.integration.dagtest import Project, fetch, template_project

pytestmark = pytest.mark.integration

D = plan.YESTERDAY  # the date the retried run processes (landed, not yet ingested in the template)


def _copy(tmp_path_factory, pg_server, monkeypatch, which: str) -> Project:
    if which == "retrain":  # the same session template as test_run_plan.py (built once)
        p, _ = template_project(tmp_path_factory, pg_server, "plan", overrides=plan.SPEC, start=plan.START,
                                days=12, bootstrap={"date": str(plan.START), "end_date": str(D - dt.timedelta(days=1))},
                                monkeypatch=monkeypatch)
    else:  # the same session template as test_monitor_dag.py: a champion, then covariate drift
        p, _ = template_project(
            tmp_path_factory, pg_server, "mon", overrides=mon.SPEC, start=mon.START, days=mon.HISTORY + 6,
            rows=mon.ROWS, scenario=mon.Scenario("covariate_drift", drift="covariate", drift_start=mon.HISTORY + 1),
            bootstrap={"date": str(mon.START), "end_date": str(mon.START + dt.timedelta(days=mon.HISTORY - 1)),
                       "force_train": True},
            setup=mon._score_two_days, monkeypatch=monkeypatch)
    return p


@pytest.fixture
def retrain_proj(tmp_path_factory, pg_server, airflow_db, monkeypatch):
    return _copy(tmp_path_factory, pg_server, monkeypatch, "retrain")


@pytest.fixture
def mon_proj(tmp_path_factory, pg_server, airflow_db, monkeypatch):
    """A copy of the monitor template; no drift__* retrain run left in this worker's metadata DB
    (test_monitor_dag.py triggers the same windows: each module starts and ends without one)."""
    _forget_drift_runs()
    yield _copy(tmp_path_factory, pg_server, monkeypatch, "monitor")
    _forget_drift_runs()


def _forget_drift_runs() -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for dr in session.query(DagRun).filter(DagRun.dag_id == "churn_retrain", DagRun.run_id.like("drift\\_\\_%")):
            session.delete(dr)


def arm(monkeypatch, tmp_path, *points: str) -> None:
    """Each point raises once, right after its commit (the task runs in this process under dag.test())."""
    monkeypatch.setenv("AIRTRAIN_FAILPOINT", ",".join(points))
    monkeypatch.setenv("AIRTRAIN_FAILPOINT_MODE", "raise")
    monkeypatch.setenv("AIRTRAIN_FAILPOINT_ONCE", str(tmp_path / "fired"))


def tries(dr) -> dict[str, list[int]]:
    """try_number of every task instance of the run, from the metadata DB."""
    out: dict[str, list[int]] = {}
    for ti in sorted(dr.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
        out.setdefault(ti.task_id, []).append(ti.try_number)
    return out


def fired(tmp_path) -> set[str]:
    return {f.name for f in (tmp_path / "fired").iterdir()} if (tmp_path / "fired").exists() else set()


def assert_invariants(p: Project) -> None:
    problems = invariants.check(p.warehouse, p.spec())
    assert problems == [], problems


def test_every_retrain_step_retried_after_its_commit_succeeds_in_the_same_run(retrain_proj, monkeypatch, tmp_path):
    p = retrain_proj
    points = ["ingest.after_commit", "validate.after_commit", "score.after_commit", "publish.after_commit",
              "promote.after_commit"]
    arm(monkeypatch, tmp_path, *points)
    log_before = fetch(p.warehouse, "SELECT id FROM registry.promotion_log")
    dr, states = p.run({"date": str(D), "force_promote": True, "reason": "retried steps test"})
    t = tries(dr)
    assert fired(tmp_path) == set(points)
    assert str(dr.state) == "success", (states, t)
    # the failed steps ran twice in THIS run (one shard of two failed), the others once
    assert {k: v for k, v in t.items() if k in ("ingest", "validate", "promote", "publish_predictions")} == {
        "ingest": [2], "validate": [2], "promote": [2], "publish_predictions": [2]}, t
    assert sorted(t["score"]) == [1, 2] and t["train"] == [1] and t["begin_scoring"] == [1], t
    # each effect exists exactly once
    run = dr.run_id
    assert fetch(p.warehouse, "SELECT count(*), min(_run_id) FROM raw.churn_batches WHERE _partition_date = %s",
                 (D,)) == [(400, run)]
    assert fetch(p.warehouse, "SELECT run_id FROM monitoring.ingest_runs WHERE partition_date = %s", (D,)) == [(run,)]
    assert fetch(p.warehouse, "SELECT run_id, rows_valid + rows_quarantined FROM monitoring.validation_runs "
                              "WHERE partition_date = %s", (D,)) == [(run, 400)]
    log = fetch(p.warehouse, "SELECT id, to_version, run_id FROM registry.promotion_log ORDER BY id")
    assert len(log) == len(log_before) + 1 and log[-1][2] == run  # promoted once
    champion = fetch(p.warehouse, "SELECT version FROM registry.champions")[0][0]
    assert champion == log[-1][1]
    assert fetch(p.warehouse, "SELECT count(*), array_agg(DISTINCT run_id) FROM predictions.churn "
                              "WHERE as_of_date = %s AND model_version = %s", (D, champion)) == [(400, [run])]
    assert fetch(p.warehouse, "SELECT count(*) FROM pg_tables WHERE schemaname = 'predictions' "
                              "AND tablename LIKE '%%stage%%'") == [(0,)]
    # the date's partition is the two shards' sub-partitions (each written and indexed by its shard task;
    # the retried shard's second try replaced its first's table), attached once by the retried publish
    part = f"churn_p{D:%Y%m%d}_v{champion}"
    leaves = fetch(p.warehouse, "SELECT c.relname, (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid) FROM "
                                "pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.level = 1 "
                                "ORDER BY 1", (f"predictions.{part}",))
    assert leaves == [(f"{part}_s0", 3), (f"{part}_s1", 3)], leaves
    assert_invariants(p)
    # and a rollback retried after its commit: one rollback row, the earlier champion back
    arm(monkeypatch, tmp_path / "rb", "rollback.after_commit")
    dr, states = p.run({"rollback_version": log[-1][1] - 1, "reason": "retried rollback test", "date": str(D)})
    assert str(dr.state) == "success", states
    assert tries(dr)["rollback"] == [2] and fired(tmp_path / "rb") == {"rollback.after_commit"}
    after = fetch(p.warehouse, "SELECT from_version, to_version, action FROM registry.promotion_log ORDER BY id")
    assert len(after) == len(log) + 1 and after[-1] == (champion, champion - 1, "rollback")
    assert_invariants(p)


def test_a_publish_retried_after_its_commit_recognises_its_own_work_only(retrain_proj):
    """The core of the publish retry: the stage is gone and the partition holds this run's rows →
    done; any other run's rows → a clear error, nothing changed."""
    from airtrain.serving import publish, scoring
    from airtrain.serving.target import ScoringError

    p = retrain_proj
    spec, wh = p.spec(), p.warehouse
    d = D - dt.timedelta(days=1)  # validated in the template
    t = scoring.begin(wh, spec, d, run_id="run-a")
    rows = scoring.score_shard(wh, spec, t, run_id="run-a")["rows"]
    first = publish.publish(wh, spec, t, rows, run_id="run-a")
    again = publish.publish(wh, spec, t, rows, run_id="run-a")  # the retry
    assert again["already_published"] is True and again["rows"] == first["rows"] == rows
    with pytest.raises(ScoringError, match="does not exist and .* not .* rows of run run-b"):
        publish.publish(wh, spec, t, rows, run_id="run-b")
    assert_invariants(p)


def test_the_drift_check_and_the_trigger_record_retried_after_their_commits(mon_proj, monkeypatch, tmp_path, caplog):
    from airtrain_dev.demo import count_runs

    p = mon_proj
    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    arm(monkeypatch, tmp_path, "drift.after_commit", "trigger.after_commit")
    dr, states = mon.run_monitor(p, mon.DRIFT)
    t = tries(dr)
    assert str(dr.state) == "success", (states, t)
    assert fired(tmp_path) == {"drift.after_commit", "trigger.after_commit"}
    assert t == {"drift_check": [2], "retrain_due": [1], "trigger_retrain": [1], "notify": [2]}, t
    assert states["trigger_retrain"] == "success", states
    run_id = f"drift__{mon.DRIFT}"
    assert count_runs("churn_retrain", run_id) == 1
    assert fetch(p.warehouse, "SELECT decision, triggered_run_id, details->'trigger'->>'state', "
                              "details->'trigger' ? 'alerted' FROM monitoring.drift_decisions WHERE window_end = %s",
                 (mon.DRIFT,)) == [("retrain", run_id, "triggered", True)]
    alerts = [r.getMessage() for r in caplog.records if "retrain triggered" in r.getMessage()]
    assert len(alerts) == 1, alerts  # the retry after the record (before the alert) alerted, once
    assert_invariants(p)


def test_a_failed_trigger_records_no_run_no_cooldown_and_alerts_the_failure(mon_proj, caplog):
    from airtrain_airflow.factory import build_monitor_dag

    p = mon_proj
    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    broken = build_monitor_dag(p.spec())
    broken.get_task("trigger_retrain").trigger_dag_id = "churn_retrain_missing"  # the trigger cannot succeed
    broken.get_task("trigger_retrain").retries = 0
    dr = broken.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(mon.DRIFT)})
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert states["trigger_retrain"] == "failed" and states["notify"] == "success", states
    assert fetch(p.warehouse, "SELECT decision, triggered_run_id, details->'trigger'->>'state' "
                              "FROM monitoring.drift_decisions WHERE window_end = %s", (mon.DRIFT,)) == [
        ("retrain", None, "failed")]
    msgs = [r.getMessage() for r in caplog.records]
    assert not any("retrain triggered" in m for m in msgs), msgs
    assert any(f"retrain trigger FAILED for window {mon.DRIFT}..{mon.DRIFT}" in m for m in msgs), msgs
    # the next window is not in cooldown: it triggers (now with the real trigger) and alerts once
    nxt = mon.DRIFT + dt.timedelta(days=1)
    dr, states = p.run({"date": str(nxt)})  # ingest, validate and score the next day
    assert str(dr.state) == "success", states
    caplog.clear()
    for _ in range(2):  # the same window twice: one record, one alert
        dr, states = mon.run_monitor(p, nxt)
        assert str(dr.state) == "success", states
    assert fetch(p.warehouse, "SELECT decision, triggered_run_id FROM monitoring.drift_decisions "
                              "WHERE window_end = %s", (nxt,)) == [("retrain", f"drift__{nxt}")]
    alerts = [r.getMessage() for r in caplog.records if "retrain triggered" in r.getMessage()]
    assert len(alerts) == 1 and f"drift__{nxt}" in alerts[0], alerts
    assert_invariants(p)
