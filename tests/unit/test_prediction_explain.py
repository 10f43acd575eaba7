"""Per-prediction explanations (scoring.explain, baseline substitution) on tiny frames with real
scikit-learn Pipelines built by the project's own build_pipeline."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from airtrain.model.explain import ExplainError, contributions, explanation_arrays, reference_values, top_k
from airtrain.model.training import build_pipeline, features_frame
from airtrain.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())


def tiny_spec(**scoring):
    data = copy.deepcopy(GOOD)
    data["features"] = [{"name": "a", "type": "float"}, {"name": "b", "type": "float"},
                        {"name": "c", "type": "category", "allowed": ["x", "y", "z"]},
                        {"name": "kept", "type": "category", "model_input": False}]
    data["training"].update({"estimator": "sklearn.linear_model.LogisticRegression", "params": {}})
    data["evaluation"]["slices"] = []
    data.pop("fairness", None)
    data["monitoring"]["trigger"]["critical_features"] = []
    data["scoring"] = {"explain": {"top_k": 2}, **scoring}
    return parse_spec(data)


def frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    df = pd.DataFrame({"a": a, "b": rng.normal(0, 1, n), "c": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
                       "kept": "k"})
    return df, (a + rng.normal(0, 1, n) > 0).astype(int)  # noisy: probabilities stay inside (0, 1)


@pytest.fixture(scope="module")
def only_a():
    """A logistic regression in which only ``a`` matters: b's and c's coefficients are zeroed."""
    spec = tiny_spec()
    df, y = frame()
    model = build_pipeline(spec).fit(features_frame(df, spec), y)
    names = list(model[:-1].get_feature_names_out())
    coef = model[-1].coef_
    for i, name in enumerate(names):
        if name.split("__")[-1] != "a":
            coef[0, i] = 0.0
    assert np.count_nonzero(coef) == 1
    return spec, model, df


def test_the_reference_is_what_the_models_imputer_learned_from_training(only_a):
    spec, model, df = only_a
    ref = reference_values(model, ["a", "b", "c"])
    assert ref["a"] == pytest.approx(df["a"].median()) and ref["b"] == pytest.approx(df["b"].median())
    assert ref["c"] == "x"  # the most frequent category
    with pytest.raises(ExplainError, match=r"no fitted SimpleImputer for \['nope'\]"):
        reference_values(model, ["a", "nope"])


def test_only_the_feature_that_matters_contributes_and_it_equals_the_recomputed_difference(only_a):
    spec, model, df = only_a
    ref = reference_values(model, ["a", "b", "c"])
    cols, contrib = contributions(model, df.head(20), spec, ref)
    assert cols == ["a", "b", "c"]
    assert np.all(contrib[:, 1:] == 0.0)  # b and c have no weight: exactly nothing
    # recompute by hand for a few rows: p(x) - p(x with a := median), the logistic function of the model
    w, b0 = model[-1].coef_[0], model[-1].intercept_[0]
    for i in range(5):
        row = features_frame(df.iloc[[i]], spec)
        z = model[0].transform(row)[0]
        moved = row.assign(a=ref["a"])
        zm = model[0].transform(moved)[0]
        expected = 1 / (1 + np.exp(-(w @ z + b0))) - 1 / (1 + np.exp(-(w @ zm + b0)))
        assert contrib[i, 0] == pytest.approx(expected, abs=1e-12)
        # sign: a above its median raises P(churn) here (positive coefficient)
        assert np.sign(contrib[i, 0]) == np.sign(df["a"].iloc[i] - ref["a"])


def test_a_value_equal_to_the_reference_or_missing_contributes_nothing(only_a):
    spec, model, df = only_a
    ref = reference_values(model, ["a", "b", "c"])
    rows = df.head(3).copy()
    rows.loc[rows.index[0], "a"] = ref["a"]
    rows.loc[rows.index[1], "a"] = np.nan
    _, contrib = contributions(model, rows, spec, ref)
    assert contrib[0, 0] == 0.0 and contrib[1, 0] == 0.0 and contrib[2, 0] != 0.0


def test_top_k_keeps_k_per_row_largest_magnitude_first_ties_in_spec_order():
    contrib = np.array([[0.1, -0.5, 0.2], [0.0, 0.0, 0.0], [0.3, 0.3, -0.31]])
    names, values = top_k(["a", "b", "c"], contrib, 2)
    assert names.tolist() == [["b", "c"], ["a", "b"], ["c", "a"]]
    assert values.tolist() == [[-0.5, 0.2], [0.0, 0.0], [-0.31, 0.3]]


def test_arrow_columns_hold_exactly_top_k_entries_per_row(only_a):
    spec, model, df = only_a
    ref = reference_values(model, ["a", "b", "c"])
    feats, vals = explanation_arrays(model, df.head(7), spec, ref, 2)
    assert len(feats) == len(vals) == 7
    assert all(len(f) == 2 and f[0] == "a" for f in feats.to_pylist())
    assert all(len(v) == 2 for v in vals.to_pylist())


def _messy(n=300, seed=1):
    """Rows with missing numbers, a missing category and a category the model never saw."""
    df, _ = frame(n, seed)
    df.loc[df.index[:5], "a"] = np.nan
    df.loc[df.index[5:9], "c"] = None
    df.loc[df.index[9:12], "c"] = "never_seen"
    return df


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LogisticRegression",
                                       "sklearn.ensemble.HistGradientBoostingClassifier"])
def test_the_preprocessed_matrix_path_gives_exactly_the_whole_pipeline_numbers(estimator, monkeypatch):
    """build_pipeline's Pipelines (imputer + scaler for a linear model, imputer alone for trees, imputer +
    one-hot) are explained on the preprocessed matrix: every contribution and score equals the exact
    path's (each column moved, the whole Pipeline scored again)."""
    from airtrain.model import explain

    spec = tiny_spec()
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"estimator": estimator})})
    df, y = frame()
    model = build_pipeline(spec).fit(features_frame(df, spec), y)
    blocks = explain.column_blocks(model)
    assert blocks is not None and set(blocks) == {"a", "b", "c"}
    assert blocks["c"].stop - blocks["c"].start == 3  # x, y, z one-hot
    ref = reference_values(model, ["a", "b", "c"])
    rows = _messy()
    fast_scores, cols, fast = explain.score_and_contributions(model, rows, spec, ref)
    exact_calls = []
    real_exact = explain._exact
    monkeypatch.setattr(explain, "_exact", lambda *a: exact_calls.append(len(a[1])) or real_exact(*a))
    explain.score_and_contributions(model, rows, spec, ref)
    assert exact_calls == [explain.CHECK_ROWS]  # the fast path ran; the exact one only on the checked rows
    monkeypatch.setattr(explain, "column_blocks", lambda model: None)
    exact_scores, _, exact = explain.score_and_contributions(model, rows, spec, ref)
    assert exact_calls[-1] == len(rows)  # this time the exact path did the whole frame
    assert cols == ["a", "b", "c"]
    np.testing.assert_allclose(fast, exact, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast_scores, exact_scores, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast_scores, model.predict_proba(features_frame(rows, spec))[:, 1], rtol=1e-12)
    assert np.count_nonzero(fast[:, 0]) > 0 and np.all(fast[:5, 0] == 0.0)  # a missing `a` contributes nothing


def test_a_pipeline_with_a_step_that_is_not_per_column_is_explained_the_exact_way():
    from airtrain.model import explain
    from sklearn.decomposition import PCA

    spec = tiny_spec()
    df, y = frame()
    model = build_pipeline(spec)
    num = model.steps[0][1].transformers[0][1]
    num.steps.append(("pca", PCA(n_components=2)))  # mixes a and b: moving one column moves both outputs
    model.fit(features_frame(df, spec), y)
    assert explain.column_blocks(model) is None
    ref = reference_values(model, ["a", "b", "c"])
    scores, _, contrib = explain.score_and_contributions(model, df.head(10), spec, ref)
    X = features_frame(df.head(10), spec)
    moved = X.assign(b=ref["b"])
    np.testing.assert_allclose(contrib[:, 1], scores - model.predict_proba(moved)[:, 1], rtol=1e-12)


def test_when_the_preprocessed_path_disagrees_on_the_checked_rows_the_exact_one_is_used(only_a, monkeypatch, caplog):
    """Fails closed: a wrong map of columns (here a and b swapped) is caught on the checked rows, logged,
    and the batch is explained the exact way."""
    from airtrain.model import explain

    spec, model, df = only_a
    ref = reference_values(model, ["a", "b", "c"])
    right = explain.column_blocks(model)
    monkeypatch.setattr(explain, "column_blocks", lambda m: {**right, "a": right["b"], "b": right["a"]})
    with caplog.at_level("WARNING", logger="airtrain.model.explain"):
        _, _, contrib = explain.score_and_contributions(model, df.head(40), spec, ref)
    assert "differ from the exact ones" in caplog.text
    assert np.all(contrib[:, 1:] == 0.0) and np.count_nonzero(contrib[:, 0]) == 40  # only `a` has weight


def test_explanations_are_off_by_default_and_top_k_is_bounded_by_the_inputs():
    data = copy.deepcopy(GOOD)
    data["scoring"].pop("explain", None)
    assert parse_spec(data).scoring.explain is None
    with pytest.raises(SpecError, match="top_k is 4 but the model has only 3 input features"):
        tiny_spec(explain={"top_k": 4})


@pytest.mark.parametrize("monitor, message", [
    pytest.param([{"metric": "equalized_odds_difference", "threshold": 0.1, "attribute": "region"}],
                 "fairness.monitor: attribute 'region' is not listed in fairness.sensitive", id="unlisted-attribute"),
    pytest.param([{"metric": "equalized_odds_difference", "threshold": 0.1},
                  {"metric": "equalized_odds_difference", "threshold": 0.2, "attribute": "senior_citizen"}],
                 "listed twice", id="two-thresholds-for-one-disparity"),
    pytest.param([{"metric": "equalized_odds_difference"}], "threshold", id="no-threshold"),
    pytest.param([{"metric": "equalized_odds_difference", "threshold": 1.2}], "less than or equal to 1",
                 id="threshold-above-1"),
])
def test_bad_fairness_monitor_rules_are_refused_with_the_fix(monitor, message):
    data = copy.deepcopy(GOOD)
    data["fairness"]["monitor"] = monitor
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_the_churn_spec_watches_a_realized_disparity():
    fair = parse_spec(copy.deepcopy(GOOD)).fairness
    assert fair is not None and [(r.metric, r.threshold) for r in fair.monitor] == [("equalized_odds_difference", 0.2)]
