"""Training and evaluation on small frames: reproducible, leak-free, safe estimators only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airtrain.model.evaluation import evaluate, predict_scores
from airtrain.model.training import InsufficientDataError, TrainingError, build_pipeline, split_by_time, train
from airtrain.simulate import simulate_day
from airtrain.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads(load_spec(ROOT / "include/pipelines/churn.yaml").model_dump_json(by_alias=True))
D0 = dt.date(2026, 1, 1)


def spec_with(**training):
    data = json.loads(json.dumps(BASE))
    data["training"].update({"window_days": 14, "holdout_days": 3, "min_rows": 500, "params": {"max_iter": 30},
                             **training})
    return parse_spec(data)


@pytest.fixture(scope="module")
def frame():
    parts = []
    for i in range(14):
        f, lab = simulate_day(D0 + dt.timedelta(days=i), rows=150)
        parts.append(f.assign(churned=lab["churned"].to_numpy()))
    return pd.concat(parts, ignore_index=True)


def test_time_split_has_no_leakage(frame):
    spec = spec_with()
    tr, ho, window = split_by_time(frame, spec, D0 + dt.timedelta(days=13))
    assert max(tr["as_of_date"]) < min(ho["as_of_date"])
    assert window["holdout_start"] == str(D0 + dt.timedelta(days=11)) and len(ho) == 450 and len(tr) == 1650


def test_training_is_reproducible_with_lineage(frame):
    spec = spec_with()
    tr, ho, _ = split_by_time(frame, spec, D0 + dt.timedelta(days=13))
    a, b = train(spec, tr), train(spec, tr.sample(frac=1, random_state=1))  # row order does not matter
    assert a.data_hash == b.data_hash
    np.testing.assert_allclose(predict_scores(a.model, ho, spec), predict_scores(b.model, ho, spec))
    lin = a.lineage
    assert lin["train_rows"] == 1650 and lin["library_versions"]["sklearn"] and lin["code_version"]
    assert lin["random_state"] == 42 and 0 < lin["class_balance"] < 1


def test_evaluation_overall_and_slices(frame):
    spec = spec_with()
    tr, ho, _ = split_by_time(frame, spec, D0 + dt.timedelta(days=13))
    res = evaluate(train(spec, tr).model, ho, spec)
    assert set(res.overall) == {"roc_auc", "average_precision", "f1", "log_loss"}
    assert 0.6 < res.overall["roc_auc"] <= 1
    rows = res.rows()
    assert {r["slice_column"] for r in rows} == {"", "contract_type", "region"}
    assert sum(r["n_rows"] for r in rows if r["slice_column"] == "region" and r["metric"] == "log_loss") == len(ho)


def test_single_class_slice_omits_undefined_metrics(frame):
    spec = spec_with()
    tr, ho, _ = split_by_time(frame, spec, D0 + dt.timedelta(days=13))
    model = train(spec, tr).model
    one_class = ho.assign(churned=0)
    res = evaluate(model, one_class, spec)
    assert "roc_auc" not in res.overall and "log_loss" in res.overall


def test_search_picks_params(frame):
    spec = spec_with(search={"method": "grid", "param_grid": {"max_leaf_nodes": [4, 8]}, "cv": 2})
    tr, _, _ = split_by_time(frame, spec, D0 + dt.timedelta(days=13))
    res = train(spec, tr)
    assert res.best_params["max_leaf_nodes"] in (4, 8) and res.cv_results["candidates"] == 2


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LogisticRegression",
                                       "sklearn.ensemble.RandomForestClassifier"])
def test_other_estimators(frame, estimator):
    spec = spec_with(estimator=estimator, params={})
    tr, ho, _ = split_by_time(frame, spec, D0 + dt.timedelta(days=13))
    assert evaluate(train(spec, tr).model, ho, spec).overall["roc_auc"] > 0.6


@pytest.mark.parametrize("path", ["sklearn.pipeline.Nope", "sklearn.utils.Bunch", "sklearn.pipeline.Pipeline"])
def test_unsafe_or_unknown_estimators_are_refused(path):
    with pytest.raises(TrainingError):
        build_pipeline(spec_with(estimator=path, params={}))


def test_insufficient_data_is_a_clear_error(frame):
    spec = spec_with(min_rows=5000)
    with pytest.raises(InsufficientDataError, match="training.min_rows is 5000"):
        split_by_time(frame, spec, D0 + dt.timedelta(days=13))


def test_regression_task(frame):
    data = json.loads(json.dumps(BASE))
    data["target"] = {"name": "monthly_charges_next", "task": "regression", "label_delay_days": 0}
    data.pop("labels")
    data.pop("fairness", None)  # group metrics are for binary targets
    data["training"] = {"estimator": "sklearn.linear_model.Ridge", "window_days": 14, "holdout_days": 3,
                        "min_rows": 500}
    data["evaluation"] = {"metrics": ["rmse", "mae", "r2"], "primary_metric": "rmse", "slices": []}
    data["promotion"] = {"gates": [{"metric": "rmse", "threshold": 100}]}
    data["monitoring"] = {}
    spec = parse_spec(data)
    df = frame.assign(monthly_charges_next=frame["monthly_charges"] * 1.1 + 3)
    tr, ho, _ = split_by_time(df, spec, D0 + dt.timedelta(days=13))
    res = evaluate(train(spec, tr).model, ho, spec)
    assert res.overall["r2"] > 0.9 and res.overall["rmse"] < 10


@pytest.mark.parametrize("column, expected", [
    pytest.param(pd.Series([True, False, None], dtype=object), [1.0, 0.0, None], id="python-bools-with-null"),
    pytest.param(pd.Series([1.0, 0.0, np.nan]), [1.0, 0.0, None], id="floats-as-read-from-the-warehouse"),
    pytest.param(pd.Series([True, False, True]), [1.0, 0.0, 1.0], id="numpy-bool"),
    pytest.param(pd.Series(["True", "false", None], dtype=object), [1.0, 0.0, None], id="text"),
])
def test_bool_features_keep_their_values_in_every_representation(frame, column, expected):
    from airtrain.model.training import features_frame

    df = frame.head(3).copy()
    df["senior_citizen"] = column.to_numpy()
    df["senior_citizen"] = df["senior_citizen"].astype(column.dtype)
    got = features_frame(df, spec_with())["senior_citizen"].tolist()
    assert [None if v != v else v for v in got] == expected


def test_no_feature_is_lost_to_all_missing_in_training(frame):
    """Every numeric/bool feature must reach the model (the imputer learns a statistic for each)."""
    from airtrain.data.features import coerce_features

    spec = spec_with()
    df = coerce_features(frame, spec)  # the dtypes training sees when it reads the warehouse
    train_df, _, _ = split_by_time(df, spec, D0 + dt.timedelta(days=13))
    model = train(spec, train_df).model
    imputer = model.named_steps["preprocess"].named_transformers_["num"].named_steps["impute"]
    assert not np.isnan(imputer.statistics_).any(), dict(zip(imputer.feature_names_in_, imputer.statistics_, strict=True))
