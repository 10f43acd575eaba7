"""The promotion gate: direction-aware value and change thresholds."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.model.gate import decide, fair_window, trained_window
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


# ---------------------------------------------------------------------------------------------
# issue 20 item 15: the primary metric must not be worse by default; the text says what happened
# ---------------------------------------------------------------------------------------------

AUC_VALUE = GateSpec(metric="roc_auc", threshold=0.6)  # a value bound only: no tolerance vs the champion
RMSE_VALUE = GateSpec(metric="rmse", threshold=100)


@pytest.mark.parametrize("challenger, champion, gates, primary, passed, why", [
    pytest.param({"roc_auc": 0.77}, {"roc_auc": 0.78}, [AUC_VALUE], "roc_auc", False,
                 "roc_auc 0.7700 vs champion 0.7800 on the same rows: worse by 0.0100 (primary metric: must not be "
                 "worse; no tolerance set) FAILED", id="primary-worse-without-tolerance-fails"),
    pytest.param({"roc_auc": 0.80}, {"roc_auc": 0.78}, [AUC_VALUE], "roc_auc", True, "better by 0.0200",
                 id="primary-better-passes"),
    pytest.param({"roc_auc": 0.78}, {"roc_auc": 0.78}, [AUC_VALUE], "roc_auc", True, "the same",
                 id="primary-equal-passes"),
    pytest.param({"rmse": 42.0}, {"rmse": 40.0}, [RMSE_VALUE], "rmse", False, "rmse 42.0000 vs champion 40.0000 on "
                 "the same rows: worse by 2.0000", id="lower-is-better-primary-rise-fails"),
    pytest.param({"rmse": 30.0}, {"rmse": 40.0}, [RMSE_VALUE], "rmse", True, "better by 10.0000",
                 id="lower-is-better-primary-fall-passes"),
    # a tolerance the spec sets on the primary metric replaces the default
    pytest.param({"roc_auc": 0.776}, {"roc_auc": 0.78}, [AUC], "roc_auc", True,
                 "worse by 0.0040 (allowed: worse by up to 0.01) ok", id="spec-tolerance-applies"),
    # the primary metric is not gated at all: it is still compared
    pytest.param({"roc_auc": 0.70, "log_loss": 0.40}, {"roc_auc": 0.75, "log_loss": 0.42}, [LOGLOSS], "roc_auc",
                 False, "roc_auc 0.7000 vs champion 0.7500", id="ungated-primary-is-compared"),
    pytest.param({"roc_auc": 0.60}, None, [AUC_VALUE], "roc_auc", True, "first model", id="first-model-no-comparison"),
])
def test_primary_metric_must_not_be_worse_by_default(challenger, champion, gates, primary, passed, why):
    d = decide(challenger, champion, gates, primary=primary)
    assert d.passed is passed, d.reason
    assert why in d.reason


def test_the_reason_states_the_real_direction_and_size():
    """A challenger 25% better (lower log_loss) is not "worse by 0.00%"; a higher AUC is "better by"."""
    d = decide({"log_loss": 0.30, "roc_auc": 0.80}, {"log_loss": 0.40, "roc_auc": 0.78}, [LOGLOSS, AUC])
    assert d.passed
    assert "log_loss 0.3000 vs champion 0.4000: better by 25.00% (allowed: worse by up to 5.00%) ok" in d.reason
    assert "roc_auc 0.8000 vs champion 0.7800: better by 0.0200" in d.reason
    assert "worse by 0.00" not in d.reason


def test_a_first_model_without_value_thresholds_says_so():
    """Only regression bounds and no champion: nothing was checked, and the text says it (not an empty list)."""
    d = decide({"log_loss": 0.3}, None, [GateSpec(metric="log_loss", max_regression_rel=0.05)], primary="log_loss")
    assert d.passed and d.checks == []
    assert d.reason == ("gate passed (first model: no champion to compare with, and no gate sets a value threshold, "
                        "so nothing was checked)")
    assert not d.reason.endswith(": ")


def test_the_default_comparison_uses_the_compared_rows():
    whole, compared, champion = {"roc_auc": 0.80}, {"roc_auc": 0.70}, {"roc_auc": 0.78}
    d = decide(whole, champion, [AUC_VALUE], challenger_compared=compared, primary="roc_auc")
    assert not d.passed and [c.kind for c in d.checks] == ["threshold", "no_regression"]
    assert "no value for the challenger on the compared days" in decide(
        whole, champion, [AUC_VALUE], challenger_compared={}, primary="roc_auc").reason
