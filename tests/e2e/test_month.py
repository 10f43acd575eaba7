"""A simulated month end to end: real dag.test() runs of the retrain and monitor DAGs, real GX,
Evidently and scikit-learn, on a real PostgreSQL warehouse (issue: drift monitoring)."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.registry import versions
from airtrain.spec import load_spec

from tests.integration.dagtest import ROOT, Project, fetch

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

END = dt.date(2026, 6, 29)
END_STABLE = dt.date(2026, 8, 29)  # other dates: the Airflow metadata DB is shared by the session
FAST = {"retry_delay_minutes": 0.01}


def _project(tmp_path, warehouse, monkeypatch) -> Project:
    from airtrain_dev.demo import DEMO_OVERRIDES, write_demo_spec

    p = Project(tmp_path, warehouse)
    write_demo_spec(ROOT / "include/pipelines/churn.yaml", p.spec_dir, {**DEMO_OVERRIDES, "schedule": FAST})
    p.activate(monkeypatch)
    return p


def test_covariate_drift_month(tmp_path, warehouse, monkeypatch, airflow_db):
    from airtrain_dev.demo import chart, count_runs, run_month

    p = _project(tmp_path, warehouse, monkeypatch)
    month = run_month(warehouse, p.root, scenario="covariate_drift", history_days=30, days=30, drift_day=20,
                      end=END, progress=print)
    print(month.table())
    days = month.days
    assert len(days) == 30
    # quiet before the drift
    before = [d for d in days[:20]]
    assert all(d.decision in ("no_drift", "drift") for d in before), [(d.date, d.decision, d.reason) for d in before]
    assert not any(d.decision in ("retrain", "cooldown") for d in before)
    # exactly one retrain after it, and the cooldown holds it at one
    retrains = [d for d in days if d.decision == "retrain"]
    assert len(retrains) == 1, [(d.date, d.decision) for d in days]
    trigger_day = days.index(retrains[0])
    assert trigger_day >= 20
    assert any(d.decision == "cooldown" for d in days[trigger_day + 1:]), "drift went on: cooldown must show"
    assert month.triggered_runs == [f"drift__{retrains[0].date.isoformat()}"]
    assert count_runs("churn_retrain", month.triggered_runs[0]) == 1
    # the triggered retrain promoted a model that is better on the drifted data it had not seen
    r = retrains[0].retrain
    assert r["state"] == "success" and r["champion_after"] > r["champion_before"], r
    spec = load_spec(p.spec_dir / "churn.yaml")
    from airtrain.data.features import labeled_frame
    from airtrain.model.evaluation import evaluate

    later = labeled_frame(warehouse, spec, END + dt.timedelta(days=5), retrains[0].date + dt.timedelta(days=1), END)
    assert len(later) > 10_000
    old = evaluate(versions.load_artifact(warehouse, spec, r["champion_before"]), later, spec).overall["roc_auc"]
    new = evaluate(versions.load_artifact(warehouse, spec, r["champion_after"]), later, spec).overall["roc_auc"]
    assert new > old, (old, new)
    ev = fetch(warehouse, "SELECT role, value FROM registry.evaluations WHERE pipeline = 'churn' AND metric = 'roc_auc' "
                          "AND slice_column = '' AND version IN (%s, %s) AND holdout_start >= %s",
               (r["champion_before"], r["champion_after"], retrains[0].date - dt.timedelta(days=3)))
    roles = dict(ev)
    assert roles["challenger"] > roles["champion"], roles  # the gate saw it too, on the same drifted holdout
    # predictions every day, by the champion of the day; the decision is stored with its report
    assert all(d.predictions == d.rows_ingested - d.rows_quarantined > 0 for d in days), month.table()
    rep = fetch(warehouse, "SELECT report_path, triggered_run_id FROM monitoring.drift_decisions "
                           "WHERE pipeline = 'churn' AND decision = 'retrain'")
    assert rep[0][1] == month.triggered_runs[0] and rep[0][0].endswith(".html")
    assert (tmp_path / "reports" / "churn" / "drift").exists()
    png = chart(month, tmp_path / "month.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stable_month_triggers_nothing(tmp_path, warehouse, monkeypatch, airflow_db):
    from airtrain_dev.demo import run_month

    p = _project(tmp_path, warehouse, monkeypatch)
    month = run_month(warehouse, p.root, scenario="stable", history_days=30, days=30, end=END_STABLE,
                      progress=print)
    print(month.table())
    assert [d.decision for d in month.days] == ["no_drift"] * 30, month.table()
    assert month.triggered_runs == []
    assert {d.champion for d in month.days} == {1}
    assert all(d.predictions == d.rows_ingested > 0 for d in month.days)
    assert all(d.auc is not None and d.auc > 0.75 for d in month.days), month.table()
