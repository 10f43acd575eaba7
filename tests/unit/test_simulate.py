"""The demo simulator: deterministic, realistic, and each scenario does what it says."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airtrain.simulate import BAD_KINDS, corrupt, simulate_day, write_landing_file
from airtrain.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
D0 = dt.date(2026, 1, 1)


def test_deterministic_and_order_independent():
    a1, l1 = simulate_day(D0 + dt.timedelta(days=3), seed=7, rows=500)
    simulate_day(D0, seed=7, rows=500)  # generating another day first changes nothing
    a2, l2 = simulate_day(D0 + dt.timedelta(days=3), seed=7, rows=500)
    pd.testing.assert_frame_equal(a1, a2)
    pd.testing.assert_frame_equal(l1, l2)
    b, _ = simulate_day(D0 + dt.timedelta(days=3), seed=8, rows=500)
    assert not a1["customer_id"].equals(b["customer_id"])


def test_clean_batch_satisfies_the_spec():
    df, labels = simulate_day(D0, rows=3000)
    assert df["customer_id"].is_unique and len(df) == 3000
    for f in SPEC.features:
        col = df[f.name]
        if not f.nullable:
            assert col.notna().all(), f.name
        if f.min is not None:
            assert col.dropna().min() >= f.min, f.name
        if f.max is not None:
            assert col.dropna().max() <= f.max, f.name
        if f.allowed:
            assert set(col) <= set(f.allowed), f.name
    assert 0.12 < labels["churned"].mean() < 0.35
    assert (labels["label_available_on"] == D0 + dt.timedelta(days=30)).all()
    assert (labels["customer_id"] == df["customer_id"]).all()


def test_covariate_drift_starts_on_its_day():
    before, _ = simulate_day(D0 + dt.timedelta(days=10), scenario="covariate_drift", start=D0)
    stable, _ = simulate_day(D0 + dt.timedelta(days=10), scenario="stable", start=D0)
    after, _ = simulate_day(D0 + dt.timedelta(days=30), scenario="covariate_drift", start=D0)
    assert abs(before["monthly_charges"].mean() - stable["monthly_charges"].mean()) < 3
    assert after["monthly_charges"].mean() > before["monthly_charges"].mean() + 15
    assert (after["contract_type"] == "month_to_month").mean() > (before["contract_type"] == "month_to_month").mean()


def test_concept_drift_changes_the_label_relation():
    def corr(df, labels):
        return np.corrcoef(df["num_support_tickets"], labels["churned"])[0, 1]

    b = simulate_day(D0 + dt.timedelta(days=5), scenario="concept_drift", start=D0, rows=6000)
    a = simulate_day(D0 + dt.timedelta(days=40), scenario="concept_drift", start=D0, rows=6000)
    assert corr(*b) > 0.1 and corr(*a) < corr(*b) - 0.08


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in BAD_KINDS])
def test_each_bad_kind(kind):
    df, _ = simulate_day(D0, rows=400)
    bad = corrupt(df, kind, np.random.default_rng(0))
    if kind == "nulls":
        assert bad["monthly_charges"].isna().sum() == 20
    elif kind == "out_of_range":
        assert (bad["tenure_months"] == -5).sum() == 20
    elif kind == "unknown_category":
        assert (bad["region"] == "atlantis").sum() == 20
    elif kind == "wrong_type":
        assert (bad["monthly_charges"] == "n/a").sum() == 20
    elif kind == "duplicate_keys":
        assert bad["customer_id"].duplicated().sum() > 0
    elif kind == "missing_column":
        assert "region" not in bad.columns and len(bad) == 400
    elif kind == "empty":
        assert len(bad) == 0 and list(bad.columns) == list(df.columns)
    with pytest.raises(ValueError):
        corrupt(df, "nonsense", np.random.default_rng(0))


def test_bad_batches_scenario_marks_its_days():
    clean, _ = simulate_day(D0 + dt.timedelta(days=2), scenario="bad_batches", start=D0)
    assert "region" in clean.columns and clean["customer_id"].is_unique
    missing, _ = simulate_day(D0 + dt.timedelta(days=13), scenario="bad_batches", start=D0)
    assert "region" not in missing.columns


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_landing_files_round_trip(tmp_path, fmt):
    df, _ = simulate_day(D0, rows=50)
    path = write_landing_file(df, tmp_path, D0, fmt)
    assert path.name == f"{D0}.{fmt}" and not list(tmp_path.glob("*.tmp"))
    back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    assert len(back) == 50 and list(back.columns) == list(df.columns)


def _psi(ref: pd.Series, cur: pd.Series) -> float:
    cats = sorted(set(ref) | set(cur))
    a = np.clip(np.array([(ref == c).mean() for c in cats]), 1e-4, None)
    b = np.clip(np.array([(cur == c).mean() for c in cats]), 1e-4, None)
    return float(np.sum((b - a) * np.log(b / a)))


def test_benign_drift_moves_the_inputs_but_not_the_models_quality():
    """Inputs drift where the model is still right: a model trained before the drift ranks (ROC AUC)
    and calibrates (mean score vs churn rate) the drifted days as well as the days before."""
    from airtrain.model.evaluation import compute_metrics, predict_scores
    from airtrain.model.training import train

    def days(first, last):
        parts = []
        for i in range(first, last + 1):
            f, lab = simulate_day(D0 + dt.timedelta(days=i), scenario="benign_drift", start=D0, rows=1500)
            parts.append(f.assign(churned=lab["churned"].to_numpy()))
        return pd.concat(parts, ignore_index=True)

    history, before, after = days(0, 7), days(12, 16), days(25, 29)  # the drift starts on day 20
    spec = SPEC.model_copy(update={"training": SPEC.training.model_copy(update={"params": {"max_iter": 60}})})
    model = train(spec, history).model
    drifted = [c for c in ("contract_type", "internet_service", "payment_method", "region")
               if _psi(history[c], after[c]) > 0.2]
    assert drifted == ["contract_type", "internet_service", "payment_method", "region"]
    assert all(_psi(history[c], before[c]) < 0.02 for c in drifted)  # nothing moves before day 20
    auc = {}
    for name, df in (("before", before), ("after", after)):
        score = predict_scores(model, df, spec)
        auc[name] = compute_metrics(df["churned"].to_numpy(), score, ["roc_auc"], 0.5)["roc_auc"]
        assert abs(score.mean() - df["churned"].mean()) < 0.025, name  # still calibrated
    assert auc["after"] >= auc["before"] - 0.005, auc
