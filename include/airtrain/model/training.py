"""Reproducible training: a scikit-learn Pipeline built from the spec, a time-based split, lineage.

All preprocessing lives inside the Pipeline (imputation, one-hot encoding), so what is scored in
production is exactly what was evaluated — no train/serve skew, no leakage across the time split.
Seeds come from the spec; the training data is hashed so a model can be traced to its exact rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import inspect
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airtrain.errors import PermanentError
from airtrain.model.artifacts import library_versions
from airtrain.spec import PipelineSpec

SCALE_FOR = ("LogisticRegression", "Ridge", "Lasso", "ElasticNet", "SGD", "SVC", "SVR", "LinearSVC", "KNeighbors",
             "MLP", "LinearRegression")


class TrainingError(PermanentError, RuntimeError):
    """Training could not run."""


class InsufficientDataError(TrainingError):
    """Not enough labeled rows (or classes) to train and evaluate."""


def estimator_class(path: str) -> type:
    """Import a scikit-learn estimator class; refuse anything else."""
    from sklearn.base import BaseEstimator

    module, _, name = path.rpartition(".")
    if not module.startswith("sklearn.") and module != "sklearn":
        raise TrainingError(f"estimator {path!r} is not a scikit-learn class; only 'sklearn.*' is allowed")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise TrainingError(f"estimator {path!r} does not exist in the installed scikit-learn") from None
    if not (inspect.isclass(cls) and issubclass(cls, BaseEstimator)):
        raise TrainingError(f"{path!r} is not a scikit-learn estimator class")
    return cls


def build_pipeline(spec: PipelineSpec):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cls = estimator_class(spec.training.estimator)
    params = dict(spec.training.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", spec.training.random_state)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise TrainingError(f"training.params do not fit {spec.training.estimator}: {exc}") from None
    inputs = [f for f in spec.features if f.model_input]  # model_input: false columns are never used
    numeric = [f.name for f in inputs if f.type in ("int", "float", "bool")]
    categorical = [f.name for f in inputs if f.type == "category"]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if any(s in cls.__name__ for s in SCALE_FOR):
        num_steps.append(("scale", StandardScaler()))
    pre = ColumnTransformer([
        ("num", Pipeline(num_steps), numeric),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]), categorical),
    ], remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", pre), ("model", estimator)])


BOOL_VALUES = {True: 1.0, False: 0.0, "true": 1.0, "false": 0.0, "True": 1.0, "False": 0.0}


def features_frame(df: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """The spec's feature columns with numeric dtypes for numeric/bool features.

    Holds every feature, also ``model_input: false`` ones: a fitted Pipeline selects its own columns
    by name, so any version (trained before or after a spec change) finds what it needs."""
    X = df[spec.feature_names].copy()
    for f in spec.features:
        if f.type in ("int", "float"):
            X[f.name] = pd.to_numeric(X[f.name], errors="coerce").astype("float64")
        elif f.type == "bool":
            col = X[f.name]
            if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
                X[f.name] = col.astype("float64")  # bool, or already 0.0/1.0/NaN
            else:  # object column of True/False/None (or their text), vectorised
                X[f.name] = col.map(BOOL_VALUES).astype("float64")
        else:
            X[f.name] = X[f.name].astype("object").where(X[f.name].notna(), np.nan)
    return X


def split_by_time(df: pd.DataFrame, spec: PipelineSpec, as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Last ``window_days`` up to ``as_of``; the last ``holdout_days`` of it are the holdout."""
    t = spec.training
    date = spec.date_column
    dates = pd.to_datetime(df[date]).dt.date
    start = as_of - dt.timedelta(days=t.window_days - 1)
    holdout_start = as_of - dt.timedelta(days=t.holdout_days - 1)
    in_window = (dates >= start) & (dates <= as_of)
    train = df[in_window & (dates < holdout_start)].reset_index(drop=True)
    holdout = df[in_window & (dates >= holdout_start)].reset_index(drop=True)
    window = {"train_start": start.isoformat(), "train_end": (holdout_start - dt.timedelta(days=1)).isoformat(),
              "holdout_start": holdout_start.isoformat(), "holdout_end": as_of.isoformat(),
              "train_rows": len(train), "holdout_rows": len(holdout),
              # the nominal window above may start before the data does: the days that really had rows
              "train_data": days_with_rows(train, date), "holdout_data": days_with_rows(holdout, date)}
    if len(train) < t.min_rows:
        raise InsufficientDataError(
            f"{spec.name}: {len(train)} labeled training rows between {start} and {holdout_start - dt.timedelta(days=1)}"
            f" but training.min_rows is {t.min_rows}; ingest more days (labels arrive "
            f"{spec.target.label_delay_days} days late) or lower training.min_rows")
    if holdout.empty:
        raise InsufficientDataError(f"{spec.name}: no labeled rows in the holdout {holdout_start}..{as_of}")
    if spec.target.task == "binary_classification":
        for name, part in (("training", train), ("holdout", holdout)):
            if part[spec.target.name].nunique() < 2:
                raise InsufficientDataError(f"{spec.name}: the {name} data has a single class; cannot train/evaluate")
    return train, holdout, window


def days_with_rows(df: pd.DataFrame, date_column: str) -> dict[str, Any]:
    """The days of ``df`` that have rows: first, last, how many days, how many rows (None/0 when empty)."""
    if df.empty:
        return {"first": None, "last": None, "days": 0, "rows": 0}
    dates = pd.to_datetime(df[date_column]).dt.date
    return {"first": min(dates).isoformat(), "last": max(dates).isoformat(), "days": int(dates.nunique()),
            "rows": int(len(df))}


def data_hash(df: pd.DataFrame, spec: PipelineSpec) -> str:
    cols = [spec.entity_key, spec.date_column, *spec.feature_names, spec.target.name]
    canon = df[cols].sort_values([spec.date_column, spec.entity_key]).reset_index(drop=True)
    canon = canon.astype({c: "string" for c in cols})
    hashed = pd.util.hash_pandas_object(canon, index=False).to_numpy()
    names = ",".join(cols)
    if spec.model_feature_names != spec.feature_names:  # a column kept but not used: a different model
        names += ";inputs=" + ",".join(spec.model_feature_names)
    return hashlib.sha256(hashed.tobytes() + names.encode()).hexdigest()


def code_version() -> str:
    root = Path(__file__).resolve().parents[3]  # the repository (include/airtrain/model/training.py)
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("AIRTRAIN_CODE_VERSION", "unknown")


@dataclass
class TrainResult:
    model: Any
    train_rows: int
    data_hash: str
    training_seconds: float
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_results: dict[str, Any] | None = None
    lineage: dict[str, Any] = field(default_factory=dict)


def train(spec: PipelineSpec, train_df: pd.DataFrame) -> TrainResult:
    """Fit the spec's pipeline (with the optional search) on ``train_df`` (sorted by date)."""
    t0 = time.monotonic()
    df = train_df.sort_values([spec.date_column, spec.entity_key]).reset_index(drop=True)
    X, y = features_frame(df, spec)[spec.model_feature_names], df[spec.target.name].to_numpy()
    pipe = build_pipeline(spec)
    best: dict[str, Any] = {}
    cv = None
    s = spec.training.search
    if s is not None:
        from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, TimeSeriesSplit

        grid = {f"model__{k}": v for k, v in s.param_grid.items()}
        scoring = _sk_scoring(spec.evaluation.primary_metric)
        if s.method == "grid":
            search = GridSearchCV(pipe, grid, cv=TimeSeriesSplit(s.cv), scoring=scoring, n_jobs=1)
        else:
            search = RandomizedSearchCV(pipe, grid, n_iter=s.n_iter, cv=TimeSeriesSplit(s.cv), scoring=scoring,
                                        random_state=spec.training.random_state, n_jobs=1)
        search.fit(X, y)
        pipe = search.best_estimator_
        best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
        cv = {"best_score": float(search.best_score_), "scoring": scoring, "candidates": len(search.cv_results_["params"])}
    else:
        pipe.fit(X, y)
    h = data_hash(df, spec)
    seconds = time.monotonic() - t0
    lineage = {
        "data_hash": h, "train_rows": len(df),
        "train_dates": [str(df[spec.date_column].min()), str(df[spec.date_column].max())],
        "class_balance": float(np.mean(y)) if spec.target.task == "binary_classification" else None,
        "estimator": spec.training.estimator, "params": {**spec.training.params, **best},
        "random_state": spec.training.random_state, "search": cv, "code_version": code_version(),
        "model_inputs": list(spec.model_feature_names),
        "library_versions": library_versions(), "training_seconds": round(seconds, 3),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    return TrainResult(pipe, len(df), h, seconds, best, cv, lineage)


def _sk_scoring(metric: str) -> str:
    return {"roc_auc": "roc_auc", "average_precision": "average_precision", "f1": "f1", "precision": "precision",
            "recall": "recall", "accuracy": "accuracy", "log_loss": "neg_log_loss", "brier": "neg_brier_score",
            "rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error", "r2": "r2",
            "mape": "neg_mean_absolute_percentage_error"}[metric]


def unobserved_inputs(df: Any, spec: PipelineSpec) -> list[str]:
    """The model inputs without a single non-null value in ``df`` (the training rows)."""
    return [c for c in spec.model_feature_names if c not in df.columns or int(df[c].notna().sum()) == 0]


def without_inputs(spec: PipelineSpec, names: list[str]) -> PipelineSpec:
    """``spec`` with ``names`` no longer model inputs (kept as columns, like ``model_input: false``)."""
    drop = set(names)
    return spec.model_copy(update={"features": [f.model_copy(update={"model_input": False}) if f.name in drop
                                                else f for f in spec.features]})
