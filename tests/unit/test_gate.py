"""The promotion gate: direction-aware value and change thresholds."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.gate import decide, fair_window, trained_window
from airtrain.spec import GateSpec

AUC = GateSpec(metric="roc_auc", threshold=0.7, max_regression_abs=0.01)
AUC_REL = GateSpec(metric="roc_auc", max_regression_rel=0.02)
LOGLOSS = GateSpec(metric="log_loss", threshold=0.5, max_regression_rel=0.05)


@pytest.mark.parametrize("challenger, champion, gates, passed, why", [
    pytest.param({"roc_auc": 0.75}, None, [AUC], True, "first model", id="first-model-passes-on-value"),
    pytest.param({"roc_auc": 0.65}, None, [AUC], False, "roc_auc 0.6500 >= 0.7 FAILED", id="first-model-fails-value"),
    pytest.param({"roc_auc": 0.80}, {"roc_auc": 0.78}, [AUC], True, "gate passed", id="improvement"),
    pytest.param({"roc_auc": 0.775}, {"roc_auc": 0.78}, [AUC], True, "gate passed", id="small-regression-allowed"),
    pytest.param({"roc_auc": 0.76}, {"roc_auc": 0.78}, [AUC], False, "worse by 0.0200", id="abs-regression"),
    pytest.param({"roc_auc": 0.76}, {"roc_auc": 0.78}, [AUC_REL], False, "worse by 2.56%", id="rel-regression"),
    pytest.param({"log_loss": 0.40}, {"log_loss": 0.42}, [LOGLOSS], True, "gate passed", id="lower-is-better-improves"),
    pytest.param({"log_loss": 0.45}, {"log_loss": 0.42}, [LOGLOSS], False, "worse by 7.14%", id="lower-is-better-worse"),
    pytest.param({"log_loss": 0.55}, None, [LOGLOSS], False, "<= 0.5 FAILED", id="lower-is-better-threshold"),
    pytest.param({"roc_auc": float("nan")}, None, [AUC], False, "no value", id="nan-metric-fails"),
    pytest.param({}, None, [AUC], False, "no value", id="missing-metric-fails"),
    pytest.param({"roc_auc": 0.9, "log_loss": 0.6}, None, [AUC, LOGLOSS], False, "log_loss", id="all-gates-must-pass"),
])
def test_gate(challenger, champion, gates, passed, why):
    d = decide(challenger, champion, gates)
    assert d.passed is passed
    assert why in d.reason
    assert d.as_dict()["checks"]


def test_the_comparison_uses_the_challengers_metrics_on_the_compared_days():
    """Thresholds judge the challenger on its whole holdout; the regression check compares it with
    the champion on the same (fair) days only."""
    whole, compared, champion = {"roc_auc": 0.80}, {"roc_auc": 0.70}, {"roc_auc": 0.78}
    assert decide(whole, champion, [AUC]).passed
    d = decide(whole, champion, [AUC], challenger_compared=compared)
    assert not d.passed and "0.7000 vs champion 0.7800" in d.reason
    assert [c.kind for c in d.checks] == ["threshold", "max_regression_abs"] and d.checks[0].passed
    assert "no value for the challenger" in decide(whole, champion, [AUC], challenger_compared={}).reason


D0 = dt.date(2026, 1, 1)


def days(a: int, b: int) -> tuple[dt.date, dt.date]:
    return D0 + dt.timedelta(days=a), D0 + dt.timedelta(days=b)


@pytest.mark.parametrize("holdout, trained, window, note", [
    pytest.param(days(10, 14), days(0, 9), days(10, 14), None, id="champion-trained-before-the-holdout"),
    pytest.param(days(10, 14), days(20, 29), days(10, 14), None, id="champion-trained-after-the-holdout"),
    pytest.param(days(10, 14), days(3, 11), days(12, 14), "compared on 2026-01-13..2026-01-15 only",
                 id="overlap-keeps-the-newest-unseen-days"),
    pytest.param(days(10, 14), days(13, 20), days(10, 12), "compared on 2026-01-11..2026-01-13 only",
                 id="overlap-at-the-end-keeps-the-earlier-days"),
    pytest.param(days(10, 14), days(5, 14), None, "no fair comparison", id="champion-trained-on-every-day"),
    pytest.param(days(10, 14), days(10, 14), None, "no fair comparison", id="same-days"),
    pytest.param(days(10, 14), None, days(10, 14), "no recorded training window", id="unknown-window"),
])
def test_fair_window(holdout, trained, window, note):
    got, why = fair_window(holdout, trained, champion=3)
    assert got == window
    assert (why is None) if note is None else (note in why and "v3" in why)


def test_trained_window_from_lineage():
    assert trained_window({"window": {"train_start": "2026-01-01", "train_end": "2026-01-09"}}) == (
        dt.date(2026, 1, 1), dt.date(2026, 1, 9))
    assert trained_window({"train_dates": ["2026-01-02", "2026-01-08"]}) == (dt.date(2026, 1, 2), dt.date(2026, 1, 8))
    assert trained_window({}) is None
