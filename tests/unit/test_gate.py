"""The promotion gate: direction-aware value and change thresholds."""

from __future__ import annotations

import pytest
from airtrain.gate import decide
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
