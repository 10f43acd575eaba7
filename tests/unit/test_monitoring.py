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


# ---------------------------------------------------------------------------------------------
# issue 24: the estimated-performance trigger and alert-only feature drift (pure)
# ---------------------------------------------------------------------------------------------

def _measured(drifted: int, estimate: float | None, *, rows: int = 5000):
    from airtrain.monitoring.signals import Measured

    s = spec()
    cols = [r.column for r in column_rules(s)]
    scores = {c: (0.9 if i < drifted else 0.01) for i, c in enumerate(cols)}  # psi: >= threshold drifted
    return Measured(rows=rows, column_scores=scores, prediction_score=0.01, baseline=0.82,
                    estimated=None if estimate is None else {"value": estimate, "lower": estimate - 0.02,
                                                             "upper": estimate + 0.02})


@pytest.mark.parametrize(("trigger", "drifted", "estimate", "retrain_signals", "alert_signals"), [
    pytest.param({}, 5, 0.80, 1, 0, id="feature-drift-retrains-by-default"),
    pytest.param({"estimated_drop_abs": 0.03}, 0, 0.78, 1, 0, id="estimated-drop-past-the-limit"),
    pytest.param({"estimated_drop_abs": 0.03}, 0, 0.80, 0, 0, id="estimated-drop-below-the-limit"),
    pytest.param({"estimated_drop_abs": 0.03}, 0, None, 0, 0, id="no-estimate-no-signal"),
    pytest.param({"feature_drift": "alert"}, 5, 0.80, 0, 1, id="alert-only-drift"),
    pytest.param({"feature_drift": "alert", "estimated_drop_abs": 0.03}, 5, 0.75, 1, 1, id="alert-and-estimated"),
])
def test_window_signals(trigger, drifted, estimate, retrain_signals, alert_signals):
    from airtrain.monitoring.signals import window_signals

    s = spec(trigger={**trigger, "critical_features": []})
    sig = window_signals(s, _measured(drifted, estimate), (D, D))
    assert len(sig.retrain_signals(s)) == retrain_signals and len(sig.alert_only(s)) == alert_signals
    if estimate is not None:
        assert sig.estimated_drop == pytest.approx(0.82 - estimate)
    if retrain_signals and "estimated_drop_abs" in trigger and not drifted:
        assert sig.retrain_signals(s)[0].startswith("estimated roc_auc fell by 0.040")


def test_alert_only_drift_is_recorded_alerted_once_per_cooldown_and_never_retrains():
    from airtrain.monitoring.signals import alert_only_decision, window_signals

    s = spec(trigger={"feature_drift": "alert", "persistence": 1, "critical_features": []})
    past: list[PastWindow] = []
    due = []
    last_due = None
    for i in range(20):
        end = D + dt.timedelta(days=i)
        sig = window_signals(s, _measured(5, 0.81), (end, end))
        details: dict = {}
        if i == 16:  # a quiet window ends the drift: the next one is a new drift, alerted at once
            past.append(PastWindow(end, False, "no_drift"))
            due.append(None)
            continue
        dec = alert_only_decision(s, end, decide(s, end, sig.retrain_signals(s), past), sig.alert_only(s), past,
                                  details, last_due)
        assert dec.decision == "drift_alert" and not dec.trigger and not dec.drifted
        due.append(details["alert"]["due"])
        last_due = end if details["alert"]["due"] else last_due
        past.append(PastWindow(end, dec.drifted, dec.decision))
    # cooldown_days 7: the first window, then a reminder every 7 days while it lasts, a new drift at once
    assert [i for i, d in enumerate(due) if d] == [0, 7, 14, 17]


def test_estimated_drop_abs_is_bounded_for_a_0_1_metric():
    with pytest.raises(SpecError, match="estimated_drop_abs is 2"):
        spec(trigger={"estimated_drop_abs": 2})
