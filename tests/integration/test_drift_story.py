"""The drift story in short (`make test-e2e`: ~2 min of DAG runs, since each monitor window also estimates
the champion's performance; `make test` keeps each of its parts in its own module): real dag.test() runs of the retrain and monitor
DAGs day by day (real GX, Evidently, scikit-learn, PostgreSQL) over a dense simulated fortnight —
quiet, then covariate drift, exactly one drift-triggered retrain, then a cooldown — and the new
champion is better than the old one on the drifted days it had not seen. The full simulated months
(30 + 30 days, drifted and stable) are `make test-e2e` (tests/e2e/test_month.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.registry import versions

from tests.integration.dagtest import Project, fetch

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

END = dt.date(2026, 5, 20)
HISTORY, DAYS, DRIFT_DAY = 10, 8, 3
#: the demo's spec, denser: labels one day late (the simulator's), three drifted daily windows in a
#: row trigger a retrain, a 1-day holdout (so the retrain learns from two drifted days and the gate
#: compares on a third), a 14-day cooldown
SHORT = {"training": {"cadence": "on_trigger", "holdout_days": 1, "window_days": 30},
         "monitoring": {"trigger": {"persistence": 3, "cooldown_days": 14}},
         "schedule": {"retry_delay_minutes": 0.01},
         # importance, fairness and per-row explanations have their own tests; the e2e months run them
         "explain": {"importance": False}, "fairness": None, "scoring": {"explain": None}}


def test_drift_triggers_one_retrain_and_a_better_champion(tmp_path, warehouse, monkeypatch, airflow_db):
    import pandas as pd
    from airtrain.data.features import coerce_features
    from airtrain.model.evaluation import evaluate
    from airtrain.simulate import Scenario, simulate_day
    from airtrain.spec import load_spec
    from airtrain_dev.demo import count_runs, run_month

    p = Project(tmp_path, warehouse)
    p.respec(SHORT)
    p.activate(monkeypatch)
    month = run_month(warehouse, p.root, scenario="covariate_drift", history_days=HISTORY, days=DAYS,
                      drift_day=DRIFT_DAY, rows=2000, end=END, progress=print)
    print(month.table())
    days = month.days
    assert len(days) == DAYS
    before = days[:DRIFT_DAY]
    assert all(d.decision == "no_drift" for d in before), [(d.date, d.decision, d.reason) for d in before]
    retrains = [d for d in days if d.decision == "retrain"]
    assert len(retrains) == 1, [(d.date, d.decision) for d in days]
    trigger_day = days.index(retrains[0])
    assert trigger_day >= DRIFT_DAY and [d.decision for d in days[trigger_day - 2:trigger_day]] == ["drift"] * 2
    after = days[trigger_day + 1:]
    assert after and all(d.decision in ("cooldown", "no_drift") for d in after), [(d.date, d.decision) for d in after]
    assert any(d.decision == "cooldown" for d in after), "drift went on: the cooldown must hold the retrain at one"
    assert month.triggered_runs == [f"drift__{retrains[0].date.isoformat()}"]
    assert count_runs("churn_retrain", month.triggered_runs[0]) == 1
    r = retrains[0].retrain
    assert r["state"] == "success" and r["champion_after"] > r["champion_before"], r
    # better than the old champion on drifted data neither model has seen: the simulator's next
    # days of the same scenario (fresh customers, ground-truth labels)
    spec = load_spec(p.spec_dir / "churn.yaml")
    start = END - dt.timedelta(days=HISTORY + DAYS - 1)
    sc = Scenario("covariate_drift", drift="covariate", drift_start=HISTORY + DRIFT_DAY)
    frames = []
    for i in range(1, 4):
        feats, labels = simulate_day(END + dt.timedelta(days=i), scenario=sc, rows=2000, start=start,
                                     label_delay_days=1)
        frames.append(feats.merge(labels[["customer_id", "as_of_date", "churned"]], on=["customer_id", "as_of_date"]))
    unseen = coerce_features(pd.concat(frames, ignore_index=True), spec)
    old = evaluate(versions.load_artifact(warehouse, spec, r["champion_before"]), unseen, spec).overall["roc_auc"]
    new = evaluate(versions.load_artifact(warehouse, spec, r["champion_after"]), unseen, spec).overall["roc_auc"]
    print(f"AUC on unseen drifted days: old champion {old:.4f}, new champion {new:.4f}")
    assert new > old + 0.01, (old, new)
    # predictions every day, by the champion of that day
    assert all(d.predictions == d.rows_ingested - d.rows_quarantined > 0 for d in days), month.table()
    assert fetch(warehouse, "SELECT count(*) FROM monitoring.drift_decisions WHERE pipeline = 'churn'") == [(DAYS,)]
