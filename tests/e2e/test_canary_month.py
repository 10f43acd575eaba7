"""Canary months end to end (issue 12): real dag.test() runs of the retrain and monitor DAGs, day by
day, on a real PostgreSQL warehouse with delayed labels.

* **better**: the concept changes (simulate's ``concept`` drift) after the champion was trained; a
  challenger trained on the new concept becomes the candidate of a canary and graduates - on the
  first day the labels allow (each arm has ``min_labeled`` labeled rows), not before.
* **worse**: a badly configured challenger (one boosting stump) passes a lenient gate, becomes the
  candidate and is aborted by the monitor (alert), the champion keeps every entity.

Realized metrics per arm are read back from ``monitoring.canary_evaluations`` in SQL."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.simulate import Scenario

from tests.integration.dagtest import TEST_SPEC, fetch, merged, template_project

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START = dt.date(2026, 9, 1)
HISTORY = 10
MIN_LABELED = 200
SPEC = merged(TEST_SPEC, {
    # a lenient gate: the canary decides (without a tolerance the gate refuses a challenger worse than the champion)
    "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.5, "max_regression_abs": 1.0}]},
    "training": {"cadence": "on_trigger"},  # daily runs only score; the canary's challenger is trained by hand
    "scoring": {"shadow": False, "partitions": 1},
    "rollout": {"strategy": "canary", "canary_fraction": 0.3, "min_labeled": MIN_LABELED, "max_days": 6},
})
BOOTSTRAP = {"date": str(START), "end_date": str(START + dt.timedelta(days=HISTORY - 1)), "force_train": True,
             "force_promote": True, "reason": "the first champion (no one to compare with)"}
CONCEPT = Scenario("canary_concept", drift="concept", drift_start=HISTORY)


def _month(p, first: dt.date, days: int) -> list[dict]:
    """Score day after day and run the monitor for each day, until the canary is decided."""
    from airtrain_airflow.factory import build_monitor_dag

    out = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        if i > 0:  # the first day was scored by the run that started the canary
            dr, states = p.run({"date": str(day)})
            assert str(dr.state) == "success", (day, states)
        mon = build_monitor_dag(p.spec()).test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(day)})
        assert {ti.task_id: ti.state for ti in mon.get_task_instances()}["canary_check"] == "success"
        (status,), = fetch(p.warehouse, "SELECT status FROM registry.rollouts WHERE pipeline = 'churn' AND "
                                        "status <> 'not_started' ORDER BY id DESC LIMIT 1")
        out.append({"day": day, "status": status})
        if status != "running":
            break
    return out


def _evaluations(p) -> list[tuple]:
    return fetch(p.warehouse, "SELECT evaluated_on, n_candidate, n_champion, metric_candidate, metric_champion, "
                              "ci_low, ci_high, decision FROM monitoring.canary_evaluations WHERE pipeline = 'churn' "
                              "ORDER BY evaluated_on")


def _allowed_day(p, first: dt.date, last: dt.date) -> dt.date | None:
    """The first day on which each arm has MIN_LABELED labeled predictions (labels known that day)."""
    for i in range((last - first).days + 1):
        day = first + dt.timedelta(days=i)
        counts = dict(fetch(p.warehouse, "SELECT p.arm, count(*) FROM predictions.churn p JOIN features.churn_labels l "
                                         "USING (customer_id, as_of_date) WHERE p.as_of_date >= %s AND "
                                         "l.label_available_on <= %s GROUP BY 1", (first, day)))
        if min(counts.get("candidate", 0), counts.get("champion", 0)) >= MIN_LABELED:
            return day
    return None


def _start_canary(p, day: dt.date, layers: tuple = ()) -> None:
    """Ingest and validate the days since the bootstrap, train as of ``day``: the candidate."""
    p.respec(SPEC, *layers)
    since = START + dt.timedelta(days=HISTORY)
    dr, states = p.run({"date": str(since), "end_date": str(day), "force_train": True} if day > since
                       else {"date": str(day), "force_train": True})
    assert str(dr.state) == "success", states
    p.respec(SPEC)
    assert fetch(p.warehouse, "SELECT candidate_version, champion_version, status FROM registry.rollouts "
                              "WHERE pipeline = 'churn'") == [(2, 1, "running")]


def test_a_better_candidate_graduates_on_the_first_day_the_labels_allow(tmp_path_factory, pg_server, airflow_db):
    p, mp = template_project(tmp_path_factory, pg_server, "canary_better", overrides=SPEC, start=START,
                             days=HISTORY + 16, rows=400, scenario=CONCEPT, bootstrap=BOOTSTRAP)
    try:
        first = START + dt.timedelta(days=HISTORY + 8)  # the new concept is in the challenger's window
        _start_canary(p, first)
        days = _month(p, first, 6)
        assert days[-1]["status"] == "graduated", days
        evals = _evaluations(p)
        for row in evals:
            print(row)
        grad = evals[-1]
        assert grad[-1] == "graduate" and all(e[-1] == "wait" for e in evals[:-1])
        allowed = _allowed_day(p, first, grad[0])
        assert grad[0] == allowed, (grad[0], allowed)  # on the day the labels allow, not before
        assert min(grad[1], grad[2]) >= MIN_LABELED and grad[5] > 0 and grad[3] > grad[4]
        assert fetch(p.warehouse, "SELECT version FROM registry.champions WHERE pipeline = 'churn'") == [(2,)]
        (reason,), = fetch(p.warehouse, "SELECT reason FROM registry.promotion_log WHERE pipeline = 'churn' "
                                        "ORDER BY id DESC LIMIT 1")
        assert reason.startswith("canary graduated: the candidate is better")
    finally:
        mp.undo()


def test_a_worse_candidate_is_aborted_and_the_champion_stays(tmp_path_factory, pg_server, airflow_db):
    p, mp = template_project(tmp_path_factory, pg_server, "canary_worse", overrides=SPEC, start=START,
                             days=HISTORY + 8, rows=400, bootstrap=BOOTSTRAP)
    try:
        first = START + dt.timedelta(days=HISTORY)
        _start_canary(p, first, ({"training": {"params": {"max_iter": 1, "max_depth": 1}}},))
        days = _month(p, first, 6)
        assert days[-1]["status"] == "aborted", days
        evals = _evaluations(p)
        last = evals[-1]
        assert last[-1] == "abort" and last[6] < 0 and last[3] < last[4]
        assert fetch(p.warehouse, "SELECT version FROM registry.champions WHERE pipeline = 'churn'") == [(1,)]
        (alerted,), = fetch(p.warehouse, "SELECT alerted_at IS NOT NULL FROM registry.rollouts WHERE pipeline = "
                                         "'churn' AND status = 'aborted'")
        assert alerted
        # after the abort the champion scores every entity again
        nxt = days[-1]["day"] + dt.timedelta(days=1)
        dr, states = p.run({"date": str(nxt)})
        assert str(dr.state) == "success", states
        assert fetch(p.warehouse, "SELECT arm, model_version, count(*) FROM predictions.churn WHERE as_of_date = %s "
                                  "GROUP BY 1, 2", (nxt,)) == [("champion", 1, 400)]
    finally:
        mp.undo()
