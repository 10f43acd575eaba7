"""Canary rollout (issue 12) with real retrain and monitor runs (dag.test()) on real PostgreSQL.

One warehouse for the module, the tests run in order and build on each other (each names what it
expects from the one before): a deliberately weak challenger (one boosting stump) becomes the
candidate → a second challenger passing meanwhile is logged, not started → both arms scored on two
dates (stable arms, the stored salt reproduces them, one row per entity and date, a re-run does not
duplicate) → the monitor aborts the weak candidate (alert) → a manual graduate through a run
parameter → max_days abort and a statistical graduation, on the same rows.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.dagtest import TEST_SPEC, fetch, merged, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 6, 1)
HISTORY = 10
D1 = START + dt.timedelta(days=HISTORY)  # the first canary day
D2 = D1 + dt.timedelta(days=1)
FRACTION = 0.3
SPEC = merged(TEST_SPEC, {
    # a lenient gate: the canary decides (without a tolerance the gate refuses a challenger worse than the champion)
    "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.5, "max_regression_abs": 1.0}]},
    "scoring": {"shadow": False, "partitions": 2},
    "rollout": {"strategy": "canary", "canary_fraction": FRACTION, "min_labeled": 60, "max_days": 5,
                "bootstrap_samples": 300},
})
WEAK = {"training": {"params": {"max_iter": 1, "max_depth": 1, "learning_rate": 0.05}}}
BOOTSTRAP = {"date": str(START), "end_date": str(START + dt.timedelta(days=HISTORY - 1)), "force_train": True,
             "force_promote": True, "reason": "the first champion (no one to compare with)"}


@pytest.fixture(scope="module")
def project(tmp_path_factory, pg_server, airflow_db):
    p, mp = template_project(tmp_path_factory, pg_server, "canary", overrides=SPEC, start=START,
                             days=HISTORY + 3, rows=400, bootstrap=BOOTSTRAP)
    yield p
    mp.undo()


def _champion(p) -> int:
    return fetch(p.warehouse, "SELECT version FROM registry.champions WHERE pipeline = 'churn'")[0][0]


def _rollouts(p) -> list[tuple]:
    return fetch(p.warehouse, "SELECT id, candidate_version, champion_version, status, salt, fraction, reason, "
                              "decided_by FROM registry.rollouts WHERE pipeline = 'churn' ORDER BY id")


def _arms(p, day: dt.date) -> dict[int, tuple[str, int]]:
    return {k: (arm, v) for k, arm, v in fetch(p.warehouse, "SELECT customer_id, arm, model_version FROM "
                                                             "predictions.churn WHERE as_of_date = %s", (day,))}


def test_a_passed_challenger_becomes_the_candidate_not_the_champion(project):
    project.respec(SPEC, WEAK)
    dr, states = project.run({"date": str(D1), "force_train": True})
    assert str(dr.state) == "success", states
    assert _champion(project) == 1
    (rid, cand, champ, status, salt, fraction, _, _), = _rollouts(project)
    assert (cand, champ, status, fraction) == (2, 1, "running", FRACTION)
    log = fetch(project.warehouse, "SELECT to_version FROM registry.promotion_log WHERE pipeline = 'churn'")
    assert [r[0] for r in log] == [1]  # no champion change: only the bootstrap's promotion
    arms = _arms(project, D1)
    assert {v for _, v in arms.values()} == {1, 2} and len(arms) == 400
    share = sum(a == "candidate" for a, _ in arms.values()) / len(arms)
    assert abs(share - FRACTION) < 0.08
    assert all((a == "candidate") == (v == 2) for a, v in arms.values())


def test_another_challenger_is_logged_not_started_and_arms_are_stable(project):
    project.respec(SPEC)  # a normal challenger (v3) passes the gate while the weak canary runs
    dr, states = project.run({"date": str(D2), "force_train": True})
    assert str(dr.state) == "success", states
    rows = _rollouts(project)
    assert [(r[1], r[3]) for r in rows] == [(2, "running"), (3, "not_started")]
    assert "canary of v2" in rows[1][6] and _champion(project) == 1
    a1, a2 = _arms(project, D1), _arms(project, D2)
    assert all(a1[k][0] == a2[k][0] for k in set(a1) & set(a2))  # an entity seen on both days keeps its arm
    from airtrain.serving.arms import arm_of

    # the assignment of both days is the same date-independent function of the stored salt and the key
    salt = rows[0][4]
    assert all(arm_of(k, salt, FRACTION) == a1[k][0] for k in a1)
    assert all(arm_of(k, salt, FRACTION) == a2[k][0] for k in a2)
    (sql_cand,), = fetch(project.warehouse, "SELECT count(*) FROM predictions.churn WHERE as_of_date = %s AND "
                         "('x' || substr(md5(%s || ':' || customer_id::text), 1, 8))::bit(32)::bigint < %s",
                         (D2, salt, int(FRACTION * 2 ** 32)))
    assert sql_cand == sum(a == "candidate" for a, _ in a2.values())


def test_a_rerun_of_the_date_does_not_duplicate(project):
    before = fetch(project.warehouse, "SELECT arm, count(*) FROM predictions.churn WHERE as_of_date = %s "
                                      "GROUP BY 1 ORDER BY 1", (D2,))
    dr, states = project.run({"date": str(D2), "force_train": True})
    assert str(dr.state) == "success", states
    (dupes,), = fetch(project.warehouse, "SELECT count(*) FROM (SELECT customer_id, as_of_date FROM predictions.churn "
                                         "GROUP BY 1, 2 HAVING count(*) > 1) d")
    assert dupes == 0
    assert fetch(project.warehouse, "SELECT arm, count(*) FROM predictions.churn WHERE as_of_date = %s GROUP BY 1 "
                                    "ORDER BY 1", (D2,)) == before
    assert [r[3] for r in _rollouts(project)] == ["running", "not_started"]  # not logged twice
    (latest,), = fetch(project.warehouse, "SELECT count(*) - count(DISTINCT customer_id) FROM predictions.churn_latest")
    assert latest == 0
    from airtrain import invariants

    assert invariants.check(project.warehouse, project.spec()) == []  # each canary date complete across its arms


def test_the_monitor_aborts_a_worse_candidate_and_alerts(project, monkeypatch, tmp_path):
    """Also Airflow's own retry of the decision (the same task instance, try 2): canary_check fails right
    after the abort is committed; its retry finds no running canary and changes nothing."""
    from airtrain_airflow.factory import build_monitor_dag

    from tests.integration.tabletouch import check_lineage, record_table_touches
    from tests.integration.test_retries import arm, fired, tries

    log_before = fetch(project.warehouse, "SELECT count(*) FROM registry.promotion_log WHERE pipeline = 'churn'")
    monitor = build_monitor_dag(project.spec())
    arm(monkeypatch, tmp_path, "canary.after_commit")
    with record_table_touches(project.warehouse.uri) as touches:  # what each task read and wrote
        dr = monitor.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(D2 + dt.timedelta(days=1))})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert states["canary_check"] == "success", states
    assert fired(tmp_path) == {"canary.after_commit"} and tries(dr)["canary_check"] == [2], tries(dr)
    assert fetch(project.warehouse, "SELECT count(*) FROM monitoring.canary_evaluations WHERE pipeline = 'churn'") == [(1,)]
    assert [r[3] for r in _rollouts(project)].count("aborted") == 1
    assert fetch(project.warehouse, "SELECT count(*) FROM registry.promotion_log WHERE pipeline = 'churn'") == log_before
    # its OpenLineage datasets = what it touched (an abort leaves the champion and its log alone)
    problems = check_lineage(touches, monitor, ["canary_check"],
                             idle_outputs=frozenset({"registry.champions", "registry.promotion_log"}))
    assert not problems, "\n".join(problems)
    (n_c, n_h, m_c, m_h, hi, decision), = fetch(
        project.warehouse, "SELECT n_candidate, n_champion, metric_candidate, metric_champion, ci_high, decision "
                           "FROM monitoring.canary_evaluations WHERE pipeline = 'churn'")
    assert decision == "abort" and hi < 0 and m_c < m_h and n_c >= 60 and n_h > n_c
    assert _rollouts(project)[0][3] == "aborted" and _champion(project) == 1
    # the alert went out (send_alert returned) before it was recorded: the record proves it
    (alerted,), = fetch(project.warehouse, "SELECT alerted_at IS NOT NULL FROM registry.rollouts WHERE id = %s",
                        (_rollouts(project)[0][0],))
    assert alerted


def test_a_rerun_of_a_date_after_the_decision_gets_the_arms_in_force_on_that_date(project):
    """Point in time (soak defect 4): the monitor aborted the canary on D2 + 1, so D2 was and is a canary
    date - a later re-run of D2 scores it with both arms again, not with whatever runs now (nothing)."""
    from airtrain.registry.rollouts import in_force
    from airtrain.serving import canary

    spec, wh = project.spec(), project.warehouse
    rid = _rollouts(project)[0][0]
    (decided_on, ends_on), = fetch(wh, "SELECT decided_on, ends_on FROM registry.rollouts WHERE id = %s", (rid,))
    assert decided_on == D2 + dt.timedelta(days=1) and ends_on == D2 + dt.timedelta(days=2)
    assert [in_force(wh, spec, d).id if in_force(wh, spec, d) else None
            for d in (D1 - dt.timedelta(days=1), D1, D2 + dt.timedelta(days=1), ends_on)] == [None, rid, rid, None]
    before = _arms(project, D2)
    run = "manual__rerun-after-abort"
    target = canary.begin(wh, spec, D2, run_id=run)
    assert target["canary"]["rollout_id"] == rid
    shards = [canary.score_shard(wh, spec, target, run_id=run, shard=s, shards=target["shards"])
              for s in range(target["shards"])]
    canary.publish(wh, spec, target, shards, run_id=run)
    assert _arms(project, D2) == before and {a for a, _ in before.values()} == {"champion", "candidate"}
    (runs,), = fetch(wh, "SELECT array_agg(DISTINCT run_id) FROM predictions.churn WHERE as_of_date = %s", (D2,))
    assert runs == [run]  # re-published by this run, with the same arms and versions


def _start(project, version: int, newer_only: bool = True) -> int:
    from airtrain.registry import release

    res = release.start(project.warehouse, project.spec(), version, actor="test", reason="test canary",
                       run_id=f"test-{version}", expected_champion=_champion(project), newer_only=newer_only, as_of=D1)
    assert res["canary"] == "started", res
    return res["rollout"]["id"]


def test_manual_graduate_needs_a_reason_and_goes_through_the_promotion_log(project):
    rid = _start(project, 3)
    dr, states = project.run({"canary_action": "graduate"})  # no reason: refused, nothing done
    assert str(dr.state) == "failed" and states["check_params"] == "failed"
    assert _champion(project) == 1
    from airtrain_airflow.factory import build_retrain_dag

    from tests.integration.tabletouch import check_lineage, record_table_touches

    with record_table_touches(project.warehouse.uri) as touches:
        dr, states = project.run({"canary_action": "graduate", "reason": "looks right in the dashboards",
                                  "date": str(D2)})
    assert str(dr.state) == "success", states
    problems = check_lineage(touches, build_retrain_dag(project.spec()), ["decide_canary"])
    assert not problems, "\n".join(problems)
    assert _champion(project) == 3
    status, reason, by = fetch(project.warehouse, "SELECT status, reason, decided_by FROM registry.rollouts "
                                                  "WHERE id = %s", (rid,))[0]
    assert status == "graduated" and "looks right in the dashboards" in reason
    # its arms scored up to the run's date: D2 was re-scored by the new champion (promotion effective_on)
    assert fetch(project.warehouse, "SELECT ends_on FROM registry.rollouts WHERE id = %s", (rid,)) == [(D2,)]
    action, why = fetch(project.warehouse, "SELECT action, reason FROM registry.promotion_log WHERE pipeline = 'churn' "
                                           "ORDER BY id DESC LIMIT 1")[0]
    assert action == "promote" and why.startswith("canary graduated: graduate by")
    # the date was re-scored by the new champion for every entity, one row each (the arms' partitions dropped)
    assert fetch(project.warehouse, "SELECT arm, model_version, count(*) FROM predictions.churn WHERE as_of_date = %s "
                                    "GROUP BY 1, 2", (D2,)) == [("champion", 3, 400)]
    from airtrain import invariants

    assert invariants.check(project.warehouse, project.spec()) == []


def test_manual_abort_and_max_days_abort_keep_the_champion(project):
    from airtrain.monitoring import canary
    from airtrain.registry import release

    spec = project.spec()
    rid = _start(project, 2, newer_only=False)
    res = release.decide_manually(project.warehouse, spec, "abort", reason="marketing freeze", actor="user:ann",
                                 run_id="manual-1")
    assert res["decision"] == "abort" and _champion(project) == 3
    assert fetch(project.warehouse, "SELECT status, decided_by FROM registry.rollouts WHERE id = %s", (rid,))[0] == (
        "aborted", "user:ann")
    # max_days: no rows of this canary were scored, so it never decides; past max_days it aborts
    rid = _start(project, 2, newer_only=False)
    from airtrain_airflow.ui import _canaries, render_index

    page = render_index({"churn": spec}, lambda s: ([], None), canaries_for=_canaries)
    running = page.split("Canary rollouts")[1].split("</table>")[0]
    assert "<td>running</td><td>v2</td><td>v3</td><td>30%</td>" in running  # the UI lists the running canary first
    wait = canary.evaluate(project.warehouse, spec, D1 + dt.timedelta(days=2), run_id="m1")
    assert wait["decision"] == "wait" and _rollouts(project)[-1][3] == "running"
    late = canary.evaluate(project.warehouse, spec, D1 + dt.timedelta(days=spec.rollout.max_days), run_id="m2")
    assert late["decision"] == "abort" and "max_days" in late["reason"] and _champion(project) == 3
    assert fetch(project.warehouse, "SELECT status FROM registry.rollouts WHERE id = %s", (rid,))[0][0] == "aborted"
    (evals,), = fetch(project.warehouse, "SELECT count(*) FROM monitoring.canary_evaluations WHERE rollout_id = %s",
                      (rid,))
    assert evals == 2


def test_a_canary_publish_retried_after_its_commit_recognises_its_own_work(project):
    """Both arms' partitions are swapped in by one transaction; a retry after that commit (the stage
    tables are gone) finds exactly this run's rows in both and succeeds without writing anything."""
    from airtrain import invariants
    from airtrain.serving import canary

    spec = project.spec()
    _start(project, 2, newer_only=False)
    d3, run = D2 + dt.timedelta(days=1), "manual__canary-retry"
    from airtrain.steps import retrain

    retrain.ingest(project.warehouse, spec, [d3], run, project.root)  # the day the retrain DAG would score
    retrain.validate(project.warehouse, spec, [d3], run, today=d3, reports_root=project.root / "reports")
    target = canary.begin(project.warehouse, spec, d3, run_id=run)
    shards = [canary.score_shard(project.warehouse, spec, target, run_id=run, shard=s, shards=target["shards"])
              for s in range(target["shards"])]
    first = canary.publish(project.warehouse, spec, target, shards, run_id=run)
    again = canary.publish(project.warehouse, spec, target, shards, run_id=run)
    assert first["arms"]["candidate"]["rows"] + first["arms"]["champion"]["rows"] == first["rows"] > 0
    assert again.get("already_published") and again["rows"] == first["rows"]
    assert fetch(project.warehouse, "SELECT arm, model_version FROM predictions.churn WHERE as_of_date = %s "
                                    "GROUP BY 1, 2 ORDER BY 1", (d3,)) == [("candidate", 2), ("champion", 3)]
    assert invariants.check(project.warehouse, spec) == []


def test_a_canary_started_scored_and_published_each_retried_after_its_commit_in_the_same_run(project, monkeypatch,
                                                                                             tmp_path):
    """Airflow's own retry (the same task instance of the same run, try 2) of the steps a canary
    changes: ``promote`` (starting the canary), the arms' ``score`` shards and ``publish`` each fail
    right after their commit and are retried; the canary is started once and the date holds one row
    per entity, in both arms, from this run."""
    from airtrain import invariants
    from airtrain.registry import release

    from tests.integration.dagtest import land_days
    from tests.integration.test_retries import arm, fired, tries

    release.decide_manually(project.warehouse, project.spec(), "abort", reason="make room for the next one",
                           actor="test", run_id="retry-prep")
    champion = _champion(project)
    d4 = D2 + dt.timedelta(days=2)
    land_days(project, d4, 1, rows=400)
    before = _rollouts(project)
    points = ["promote.after_commit", "score.after_commit", "publish.after_commit"]
    arm(monkeypatch, tmp_path, *points)
    dr, states = project.run({"date": str(d4), "force_train": True})
    t = tries(dr)
    assert fired(tmp_path) == set(points)
    assert str(dr.state) == "success", (states, t)
    assert t["promote"] == [2] and t["publish_predictions"] == [2] and 2 in t["score"], t
    new = _rollouts(project)[len(before):]
    assert [(r[2], r[3]) for r in new] == [(champion, "running")], new  # started once, by the first try
    rows = fetch(project.warehouse, "SELECT arm, model_version, count(*), min(run_id), max(run_id) FROM "
                                    "predictions.churn WHERE as_of_date = %s GROUP BY 1, 2 ORDER BY 1", (d4,))
    assert [r[:2] for r in rows] == [("candidate", new[0][1]), ("champion", champion)], rows
    assert sum(r[2] for r in rows) == 400 and {r[3] for r in rows} | {r[4] for r in rows} == {dr.run_id}
    assert invariants.check(project.warehouse, project.spec()) == []
