"""Drift rules and the retrain decision (pure), and the Evidently adapter on small frames."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from airtrain.monitoring.drift import ColumnRule, column_rules, evidently_drift, prediction_rule
from airtrain.monitoring.windows import PastWindow, decide
from airtrain.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
D = dt.date(2026, 6, 20)


def spec(**monitoring):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    for k, v in monitoring.items():
        if isinstance(v, dict) and isinstance(data["monitoring"].get(k), dict):
            data["monitoring"][k] = {**data["monitoring"][k], **v}
        else:
            data["monitoring"][k] = v
    return parse_spec(data)


def test_column_rules_defaults_overrides_and_categorical_fallback():
    s = spec(default_method="psi", default_threshold=0.25,
             columns={"tenure_months": {"method": "ks"}, "region": {"method": "ks"},
                      "monthly_charges": {"method": "wasserstein", "threshold": 0.3}})
    rules = {r.column: r for r in column_rules(s)}
    assert set(rules) == set(s.feature_names)
    assert (rules["total_charges"].method, rules["total_charges"].threshold) == ("psi", 0.25)
    assert (rules["tenure_months"].method, rules["tenure_months"].threshold) == ("ks", 0.05)  # the method's own
    assert (rules["monthly_charges"].method, rules["monthly_charges"].threshold) == ("wasserstein", 0.3)
    assert rules["region"].kind == "categorical" and rules["region"].method == "jensenshannon"
    assert rules["senior_citizen"].kind == "categorical"
    assert prediction_rule(s).column == "prediction"


def test_p_value_methods_drift_below_the_threshold_distances_above():
    assert ColumnRule("x", "numerical", "ks", 0.05).drifted(0.01) is True
    assert ColumnRule("x", "numerical", "ks", 0.05).drifted(0.30) is False
    assert ColumnRule("x", "numerical", "psi", 0.2).drifted(0.25) is True
    assert ColumnRule("x", "numerical", "psi", 0.2).drifted(0.05) is False
    assert ColumnRule("x", "numerical", "psi", 0.2).drifted(None) is None


def test_monitoring_columns_must_be_features():
    with pytest.raises(SpecError, match="not a feature"):
        spec(columns={"nope": {"method": "psi"}})


def past(days_before: int, drifted: bool, decision: str = "drift") -> PastWindow:
    return PastWindow(D - dt.timedelta(days=days_before), drifted, decision)


@pytest.mark.parametrize("signals, history, insufficient, expected", [
    pytest.param([], [], "3 rows", "insufficient_data", id="small-window-is-never-drift"),
    pytest.param(["x"], [], "3 rows", "insufficient_data", id="small-window-wins-over-signals"),
    pytest.param([], [past(1, True)], None, "no_drift", id="no-signal"),
    pytest.param(["x"], [], None, "drift", id="first-drifted-window-waits-for-persistence"),
    pytest.param(["x"], [past(1, True)], None, "retrain", id="second-consecutive-window-triggers"),
    pytest.param(["x"], [past(2, True)], None, "drift", id="a-gap-breaks-the-streak"),
    pytest.param(["x"], [past(1, False, "no_drift")], None, "drift", id="quiet-yesterday-breaks-the-streak"),
    pytest.param(["x"], [past(1, True), past(3, True, "retrain")], None, "cooldown", id="cooldown"),
    pytest.param(["x"], [past(1, True), past(14, True, "retrain")], None, "retrain", id="cooldown-over"),
    pytest.param(["x"], [past(1, True), PastWindow(D, True, "retrain")], None, "retrain",
                 id="a-rerun-ignores-its-own-window"),
    pytest.param(["x"], [past(1, True), past(-2, True, "retrain")], None, "retrain",
                 id="later-windows-do-not-count"),
])
def test_decide(signals, history, insufficient, expected):
    s = spec(trigger={"persistence": 2, "cooldown_days": 14})
    d = decide(s, D, signals, history, insufficient)
    assert d.decision == expected, d.reason
    assert d.trigger is (expected == "retrain")
    assert d.drifted is (expected in ("drift", "cooldown", "retrain"))


def test_persistence_one_triggers_at_once():
    d = decide(spec(trigger={"persistence": 1}), D, ["x"], [])
    assert d.decision == "retrain"


def test_evidently_flags_a_shifted_column_and_not_a_stable_one(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    ref = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n),
                        "c": rng.choice(["x", "y", "z"], n), "prediction": rng.uniform(0, 1, n)})
    cur = pd.DataFrame({"a": rng.normal(1.0, 1, n), "b": rng.normal(0, 1, n),
                        "c": rng.choice(["x", "y", "z", None], n, p=[0.4, 0.2, 0.2, 0.2]),
                        "prediction": rng.uniform(0, 1, n)})
    rules = [ColumnRule("a", "numerical", "psi", 0.2), ColumnRule("b", "numerical", "ks", 0.05),
             ColumnRule("c", "categorical", "jensenshannon", 0.1), ColumnRule("prediction", "numerical", "psi", 0.2)]
    scores, snapshot = evidently_drift(ref, cur, rules, 0.5)
    assert rules[0].drifted(scores["a"]) is True
    assert rules[1].drifted(scores["b"]) is False
    assert rules[2].drifted(scores["c"]) is True  # nulls are a category of their own
    assert rules[3].drifted(scores["prediction"]) is False
    # the report is written the way the monitor writes it, and it is a real Evidently report

    from airtrain.monitoring.check import report_html
    from airtrain.monitoring.windows import Decision
    from airtrain.spec import load_spec
    from airtrain.warehouse.reports import ReportStore

    spec = load_spec(Path(__file__).resolve().parents[2] / "include/pipelines/churn.yaml")
    day = dt.date(2026, 3, 1)
    page = report_html(snapshot, spec, (day, day), 1, Decision("retrain", "3 columns drifted", True), 0.5)
    store = ReportStore(tmp_path / "r")
    store.save(spec.name, "drift", "rep1", page)
    html = store.read(spec.name, "drift", "rep1")
    assert "<html" in html.lower() and len(html) > 10_000
    assert "3 columns drifted" in html
    assert "ValueDrift" in html or "Value drift" in html or "drift" in html.lower()


def test_evidently_skips_an_all_null_numeric_column():
    ref = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0)})
    cur = pd.DataFrame({"a": [np.nan] * 100, "b": np.arange(100.0)})
    scores, _ = evidently_drift(ref, cur, [ColumnRule("a", "numerical", "psi", 0.2),
                                           ColumnRule("b", "numerical", "psi", 0.2)], 0.5)
    assert scores["a"] is None and scores["b"] is not None
