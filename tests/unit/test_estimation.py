"""Performance estimated without labels (airtrain.monitoring.estimation): CBPE and DLE on seeded synthetic data
where the truth is known, the stored forms, the band's coverage, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from airtrain.errors import PermanentError
from airtrain.model.artifacts import UntrustedArtifactError
from airtrain.model.evaluation import compute_metrics
from airtrain.monitoring import estimation as E
from airtrain.simulate import churn_probability, simulate_day

ALL = list(E.CLASSIFICATION_METRICS)


def calibrated_world(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that ARE the probability of the label (a perfectly calibrated model), and labels."""
    rng = np.random.default_rng(seed)
    s = 1 / (1 + np.exp(-(1.6 * rng.normal(shift, 1, n) - 1.2)))
    return s, (rng.random(n) < s).astype(int)


IDENTITY = E.Calibrator((0.0, 1.0), (0.0, 1.0), (1000, 1000), 2000, 1000, 0.0, 0.0)


@pytest.fixture(scope="module")
def holdout_calibrator():
    s, y = calibrated_world(4000, seed=1)
    return E.fit_calibrator(y, s)


# ---------------------------------------------------------------------------------------------
# CBPE
# ---------------------------------------------------------------------------------------------

def test_calibrated_model_estimate_matches_the_truth_within_the_band(holdout_calibrator):
    # a window from a shifted input distribution (covariate shift: P(y | score) unchanged)
    s, y = calibrated_world(3000, seed=2, shift=0.4)
    est = E.estimate_classification(s, holdout_calibrator, ALL, 0.5, seed=3)
    real = compute_metrics(y, s, ALL, 0.5)
    assert set(est) == set(ALL)
    for m in ALL:
        e = est[m]
        assert e.contains(real[m]), (m, e, real[m])
        assert abs(e.value - real[m]) < {"average_precision": 0.04, "precision": 0.04}.get(m, 0.03), (m, e, real[m])
        assert e.method == "cbpe" and e.n_rows == 3000 and e.lower < e.value < e.upper
    # the expectation under the true probabilities is what CBPE computes: with the identity
    # calibrator the point estimates equal the mean of many Bernoulli draws of the realized metric
    ident = E.estimate_classification(s, IDENTITY, ALL, 0.5, seed=4, calibration_uncertainty=False)
    rng = np.random.default_rng(5)
    sims = [compute_metrics((rng.random(len(s)) < s).astype(int), s, ALL, 0.5) for _ in range(150)]
    for m in ALL:
        assert abs(ident[m].value - np.mean([d[m] for d in sims])) < 0.004, m


def test_expected_confusion_matrix_by_hand():
    p = np.array([0.9, 0.6, 0.2, 0.4])
    s = np.array([0.8, 0.55, 0.3, 0.45])
    c = E.expected_confusion(p, s, 0.5)
    assert c == pytest.approx({"tp": 1.5, "fp": 0.5, "fn": 0.6, "tn": 1.4})
    est = E.estimate_classification(np.repeat(s, 20), IDENTITY, ["precision", "recall", "f1", "accuracy"], 0.5,
                                    min_rows=10)
    # the identity calibrator makes p == s here
    c = E.expected_confusion(np.repeat(s, 20), np.repeat(s, 20), 0.5)
    assert est["precision"].value == pytest.approx(c["tp"] / (c["tp"] + c["fp"]))
    assert est["recall"].value == pytest.approx(c["tp"] / (c["tp"] + c["fn"]))
    assert est["f1"].value == pytest.approx(2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"]))
    assert est["accuracy"].value == pytest.approx((c["tp"] + c["tn"]) / 80)


@pytest.mark.parametrize("ties", [pytest.param(False, id="distinct-scores"), pytest.param(True, id="tied-scores")])
def test_each_simulated_metric_is_the_realized_metric_of_its_labels(ties):
    # the band's vectorised metrics (ranks, cumulative sums, confusion counts) against scikit-learn:
    # drawing with probabilities that are the labels themselves must give exactly the realized metric
    rng = np.random.default_rng(7)
    s = rng.random(500)
    if ties:
        s = np.round(s, 1)
    y = (rng.random(500) < 0.3 + 0.4 * s).astype(int)
    r = E._Ranked(s)
    sims = E._draw_classification(r, lambda k: y[r.order].astype(float), s[r.order], ALL, 0.5, 3, rng)
    real = compute_metrics(y, s, ALL, 0.5)
    for m in ALL:
        assert sims[m] == pytest.approx(np.full(3, real[m]), abs=1e-9), m


def test_expected_roc_auc_handles_ties_like_the_realized_one():
    # every score tied: the expected ROC curve is the diagonal, whatever the probabilities
    s = np.full(400, 0.3)
    est = E.estimate_classification(s, IDENTITY, ["roc_auc"], 0.5)
    assert est["roc_auc"].value == pytest.approx(0.5)


def test_band_coverage_is_near_nominal_on_repeated_draws(holdout_calibrator):
    # (a) the band as a predictive interval: a fixed window of scores, labels drawn again and again
    s, _ = calibrated_world(1000, seed=11)
    est = E.estimate_classification(s, IDENTITY, ["roc_auc", "f1"], 0.5, draws=400, seed=12,
                                    calibration_uncertainty=False)
    rng = np.random.default_rng(13)
    hits = {"roc_auc": 0, "f1": 0}
    for _ in range(300):
        real = compute_metrics((rng.random(len(s)) < s).astype(int), s, ["roc_auc", "f1"], 0.5)
        for m in hits:
            hits[m] += est[m].contains(real[m])
    for m, h in hits.items():
        assert 0.91 <= h / 300 <= 0.985, (m, h)
    # (b) the whole method: a new holdout (so a new calibrator) and a new window each time
    inside = []
    for rep in range(50):
        hs, hy = calibrated_world(2000, seed=100 + rep)
        ws, wy = calibrated_world(1000, seed=200 + rep, shift=0.3)
        e = E.estimate_classification(ws, E.fit_calibrator(hy, hs), ["roc_auc"], 0.5, draws=200, seed=rep)
        inside.append(e["roc_auc"].contains(compute_metrics(wy, ws, ["roc_auc"], 0.5)["roc_auc"]))
    assert np.mean(inside) >= 0.86, np.mean(inside)
    # and the calibration uncertainty is what widens the band when the holdout is small
    s, _ = calibrated_world(2000, seed=14)
    small = E.fit_calibrator(*calibrated_world(400, seed=15)[::-1])
    tight = E.estimate_classification(s, small, ["roc_auc"], 0.5, calibration_uncertainty=False)["roc_auc"]
    wide = E.estimate_classification(s, small, ["roc_auc"], 0.5)["roc_auc"]
    assert wide.upper - wide.lower > 1.3 * (tight.upper - tight.lower)


def test_estimates_are_seeded():
    s, _ = calibrated_world(800, seed=21)
    a = E.estimate_classification(s, IDENTITY, ALL, 0.5, seed=5)
    b = E.estimate_classification(s, IDENTITY, ALL, 0.5, seed=5)
    c = E.estimate_classification(s, IDENTITY, ALL, 0.5, seed=6)
    assert a == b and a != c and all(a[m].value == c[m].value for m in ALL)
    # a window's seed is stable across processes (no salted hash()) and differs between windows
    assert E.window_seed("churn", 3, "2026-03-01") == 10222308071372095948
    assert E.window_seed("churn", 3, "2026-03-02") != E.window_seed("churn", 3, "2026-03-01")


def test_rows_beyond_the_calibrated_range_are_flagged(holdout_calibrator):
    s, _ = calibrated_world(1000, seed=31)
    inside = E.estimate_classification(s, holdout_calibrator, ["roc_auc"], 0.5)["roc_auc"]
    hs, hy = calibrated_world(3000, seed=32)
    keep = (hs > 0.2) & (hs < 0.6)  # a holdout whose scores covered only 0.2 .. 0.6
    narrow = E.fit_calibrator(hy[keep], hs[keep])
    flagged = E.estimate_classification(s, narrow, ["roc_auc"], 0.5)["roc_auc"]
    assert inside.outside < 0.01 and not inside.note
    assert flagged.outside > 0.3 and "extrapolates" in flagged.note


# ---------------------------------------------------------------------------------------------
# the calibrator's stored form
# ---------------------------------------------------------------------------------------------

def test_calibrator_json_round_trip_applies_like_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    s, y = calibrated_world(3000, seed=41)
    cal = E.fit_calibrator(y, s)
    text = cal.to_json()
    assert len(text) < 20_000 and json.loads(text)["format"] == E.CALIBRATOR_FORMAT
    back = E.Calibrator.from_json(text)
    assert back == cal
    assert sum(back.steps()[2]) == 3000 and back.n_rows == 3000 and back.positives == int(y.sum())
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y)
    probe = np.r_[np.linspace(0, 1, 501), s[:200]]
    np.testing.assert_allclose(back.apply(probe), iso.predict(probe), atol=1e-12)
    assert back.brier_calibrated <= back.brier_raw + 1e-9
    assert len(back.curve) == 10 and sum(b["rows"] for b in back.curve) == 3000


@pytest.mark.parametrize("change, message", [
    pytest.param({"format": "pickle"}, "format", id="unknown-format"),
    pytest.param({"y": "decreasing"}, "increasing map", id="decreasing"),
    pytest.param({"x": "short"}, "thresholds", id="lengths-differ"),
    pytest.param({"y": "nan"}, "malformed", id="nan-value"),
    pytest.param({"n": "zero"}, "positive integers", id="empty-step"),
    pytest.param({"n_rows": None}, "malformed", id="missing-field"),
])
def test_a_malformed_stored_calibrator_is_refused(change, message):
    d = json.loads(E.fit_calibrator(*calibrated_world(1000, seed=51)[::-1]).to_json())
    key, how = next(iter(change.items()))
    if how == "decreasing":
        d["y"] = d["y"][::-1]
    elif how == "short":
        d["x"] = d["x"][:-1]
    elif how == "nan":
        d["y"][1] = float("nan")  # json.dumps writes NaN, which Python's json reads back
    elif how == "zero":
        d["n"][0] = 0
    elif how is None:
        del d[key]
    else:
        d[key] = how
    with pytest.raises(E.EstimationError, match=message):
        E.Calibrator.from_json(json.dumps(d))
    with pytest.raises(E.EstimationError, match="not JSON"):
        E.Calibrator.from_json("{not json")


# ---------------------------------------------------------------------------------------------
# refusals (fail closed, with what to change)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("y, s, message", [
    pytest.param([0, 1] * 50, np.linspace(0, 1, 100), "100 rows; at least 200", id="too-few-rows"),
    pytest.param([0] * 500, np.linspace(0, 1, 500), "single class", id="single-class"),
    pytest.param([1] * 5 + [0] * 495, np.linspace(0, 1, 500), "5 positive", id="too-few-positives"),
    pytest.param([0, 1] * 250, np.r_[np.nan, np.linspace(0, 1, 499)], "1 of 500 scores are NaN", id="nan-score"),
    pytest.param([0, 1] * 250, np.linspace(0, 2, 500), "probabilities in", id="not-a-probability"),
    pytest.param([0, 1] * 249 + [0, 2], np.linspace(0, 1, 500), "0/1", id="not-binary"),
    pytest.param([0, 1] * 249 + [0, np.nan], np.linspace(0, 1, 500), "missing", id="missing-label"),
    pytest.param([0, 1] * 250, np.full(500, 0.3), "same score", id="constant-score"),
    pytest.param([0, 1] * 250, np.column_stack([np.linspace(1, 0, 500), np.linspace(0, 1, 500)]), "shape",
                 id="both-predict-proba-columns"),
    pytest.param(["yes", "no"] * 250, np.linspace(0, 1, 500), "not numeric", id="text-labels"),
])
def test_calibration_refuses(y, s, message):
    with pytest.raises(E.EstimationError, match=message):
        E.fit_calibrator(y, s)


def test_estimation_refuses(holdout_calibrator):
    s, _ = calibrated_world(500, seed=61)
    with pytest.raises(E.EstimationError, match="30 rows; at least 50"):
        E.estimate_classification(s[:30], holdout_calibrator)
    with pytest.raises(E.EstimationError, match="2 of 500 scores are NaN"):
        E.estimate_classification(np.r_[s[:498], np.nan, np.nan], holdout_calibrator)
    with pytest.raises(E.EstimationError, match="cannot estimate"):
        E.estimate_classification(s, holdout_calibrator, ["rmse"])
    with pytest.raises(E.EstimationError, match="draws"):
        E.estimate_classification(s, holdout_calibrator, draws=10)
    assert issubclass(E.EstimationError, PermanentError)  # a retry cannot fix it: fail the task at once


# ---------------------------------------------------------------------------------------------
# DLE (regression)
# ---------------------------------------------------------------------------------------------

def regression_world(n: int, seed: int, low: float = -2.0):
    """y = 3·x0 + noise whose spread grows with |x1|, x1 uniform in [low, 2] (the holdout: [-2, 2])."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(0, 1, n), rng.uniform(low, 2, n)])
    return X, 3 * X[:, 0] + (0.5 + np.abs(X[:, 1])) * rng.normal(0, 1, n)


@pytest.fixture(scope="module")
def loss_estimator():
    X, y = regression_world(2500, seed=71)
    pred = 3 * X[:, 0]  # the model: right on average, blind to the noise
    return E.fit_loss_estimator(X, y, pred, ["rmse", "mae", "mape", "r2"], seed=1)


def test_dle_tracks_a_change_in_error_and_its_band_holds_the_truth(loss_estimator):
    out = {}
    for name, low in (("before", -2.0), ("after", 1.0)):  # after: |x1| larger on average -> more error
        X, y = regression_world(2000, seed=72, low=low)
        pred = 3 * X[:, 0]
        est = E.estimate_regression(X, pred, loss_estimator, ["rmse", "mae", "mape", "r2"], seed=3)
        real = compute_metrics(y, pred, ["rmse", "mae", "mape", "r2"], 0.5)
        for m in ("rmse", "mae", "r2"):
            assert est[m].contains(real[m]), (name, m, est[m], real[m])
        assert abs(est["rmse"].value - real["rmse"]) < 0.08 * real["rmse"]
        assert est["rmse"].method == "dle" and est["r2"].method == "draws"
        out[name] = (est["rmse"].value, real["rmse"])
    assert out["after"][0] > out["before"][0] + 0.3 and out["after"][1] > out["before"][1] + 0.3


def test_loss_estimator_round_trips_through_skops(loss_estimator):
    art = loss_estimator.to_skops()
    back = E.LossEstimator.from_skops(art.data, art.sha256, art.versions)
    X, y = regression_world(300, seed=81)
    a = E.estimate_regression(X, 3 * X[:, 0], loss_estimator, ["rmse", "mae"], seed=1)
    b = E.estimate_regression(X, 3 * X[:, 0], back, ["rmse", "mae"], seed=1)
    assert a == b
    np.testing.assert_array_equal(back.residuals, loss_estimator.residuals)
    with pytest.raises(Exception, match="checksum"):
        E.LossEstimator.from_skops(art.data, "0" * 64, art.versions)


def test_loss_estimator_refuses():
    X, y = regression_world(500, seed=91)
    with pytest.raises(E.EstimationError, match="at least 200"):
        E.fit_loss_estimator(X[:100], y[:100], 3 * X[:100, 0])
    with pytest.raises(E.EstimationError, match="no error on any row"):
        E.fit_loss_estimator(X, y, y)
    with pytest.raises(E.EstimationError, match="NaN"):
        E.fit_loss_estimator(X, y, np.r_[np.nan, 3 * X[1:, 0]])
    le = E.fit_loss_estimator(X, y, 3 * X[:, 0], ["rmse"])
    with pytest.raises(E.EstimationError, match="without a model for \\['mae'\\]"):
        E.estimate_regression(X, 3 * X[:, 0], le, ["rmse", "mae"])
    with pytest.raises(E.EstimationError, match="3 model inputs but the loss estimator was trained on 2"):
        E.estimate_regression(np.column_stack([X, X[:, 0]]), 3 * X[:, 0], le, ["rmse"])
    with pytest.raises(E.EstimationError, match="cannot estimate"):
        E.estimate_regression(X, 3 * X[:, 0], le, ["roc_auc"])


def test_a_stored_loss_estimator_with_an_untrusted_type_is_refused(loss_estimator):
    # the artifact path refuses what skops would have to trust beyond the allow-list
    import datetime as dt

    import skops.io as sio

    data = sio.dumps({"format": E.LOSS_ESTIMATOR_FORMAT, "models": {"sq": dt.date(2026, 1, 1)}})
    with pytest.raises(UntrustedArtifactError):
        E.LossEstimator.from_skops(data, __import__("hashlib").sha256(data).hexdigest())


# ---------------------------------------------------------------------------------------------
# on the demo's churn data
# ---------------------------------------------------------------------------------------------

def test_model_inputs_are_the_pipelines_own_preprocessed_columns():
    import datetime as dt

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    df, labels = simulate_day(dt.date(2026, 1, 1), rows=300)
    X = df[["tenure_months", "monthly_charges"]].to_numpy(float)
    pipe = Pipeline([("scale", StandardScaler()), ("model", HistGradientBoostingClassifier(max_iter=5))])
    pipe.fit(X, labels["churned"])
    np.testing.assert_allclose(E.model_inputs(pipe, X), StandardScaler().fit(X).transform(X))
    assert E.model_inputs(HistGradientBoostingClassifier(), X).shape == (300, 2)
    assert churn_probability(df).shape == (300,)


def test_fit_for_version_fits_what_the_monitor_loads_or_says_why():
    """At evaluation (steps.retrain.evaluate): a classifier's calibrator on its holdout, through its stored
    form; a holdout too small to calibrate is recorded with the reason, never an error of the evaluation."""
    import datetime as dt
    from pathlib import Path

    import yaml
    from airtrain.model.calibration import fit_for_version
    from airtrain.model.training import build_pipeline, features_frame
    from airtrain.spec import parse_spec

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "include/pipelines/churn.yaml").read_text())
    data["training"].update(search=None, estimator="sklearn.linear_model.LogisticRegression", params={})
    spec = parse_spec(data)
    df, labels = simulate_day(dt.date(2026, 1, 1), rows=2400)
    df = df.assign(churned=labels["churned"].to_numpy())
    model = build_pipeline(spec).fit(features_frame(df.iloc[:1600], spec)[spec.model_feature_names],
                                     df["churned"].iloc[:1600].to_numpy())
    fitted = fit_for_version(model, df.iloc[1600:].reset_index(drop=True), spec)
    assert fitted.kind == "calibrator" and fitted.error is None and fitted.n_rows == 800
    cal = E.Calibrator.from_json(fitted.calibrator.to_json())
    assert cal.n_rows == 800 and len(cal.curve) == 10
    small = fit_for_version(model, df.iloc[1600:1700].reset_index(drop=True), spec)
    assert small.calibrator is None and "100 rows; at least 200" in small.error
