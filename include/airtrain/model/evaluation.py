"""Metrics of a model on a holdout, overall and per slice. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airtrain.model.training import features_frame
from airtrain.spec import PipelineSpec


def predict_scores(model: Any, df: pd.DataFrame, spec: PipelineSpec) -> np.ndarray:
    """Probability of the positive class (binary) or the prediction (regression)."""
    X = features_frame(df, spec)
    if spec.target.task == "binary_classification":
        return model.predict_proba(X)[:, 1]
    return np.asarray(model.predict(X), dtype="float64")


def compute_metrics(y: np.ndarray, score: np.ndarray, metrics: list[str], threshold: float) -> dict[str, float]:
    from sklearn import metrics as m

    out: dict[str, float] = {}
    label = (score >= threshold).astype(int)
    two_classes = len(np.unique(y)) == 2
    for name in metrics:
        try:
            if name == "roc_auc":
                if not two_classes:
                    continue
                v = m.roc_auc_score(y, score)
            elif name == "average_precision":
                if not two_classes:
                    continue
                v = m.average_precision_score(y, score)
            elif name == "f1":
                v = m.f1_score(y, label, zero_division=0)
            elif name == "precision":
                v = m.precision_score(y, label, zero_division=0)
            elif name == "recall":
                v = m.recall_score(y, label, zero_division=0)
            elif name == "accuracy":
                v = m.accuracy_score(y, label)
            elif name == "log_loss":
                v = m.log_loss(y, np.clip(score, 1e-15, 1 - 1e-15), labels=[0, 1])
            elif name == "brier":
                v = m.brier_score_loss(y, score)
            elif name == "rmse":
                v = float(np.sqrt(m.mean_squared_error(y, score)))
            elif name == "mae":
                v = m.mean_absolute_error(y, score)
            elif name == "r2":
                if len(y) < 2:
                    continue
                v = m.r2_score(y, score)
            elif name == "mape":
                v = m.mean_absolute_percentage_error(y, score)
            else:
                raise ValueError(f"unknown metric {name!r}")
        except ValueError:
            continue
        if np.isfinite(v):
            out[name] = float(v)
    return out


@dataclass
class EvaluationResult:
    overall: dict[str, float]
    n_rows: int
    slices: list[dict[str, Any]] = field(default_factory=list)  # slice_column, slice_value, n_rows, metrics

    def rows(self) -> list[dict[str, Any]]:
        out = [{"metric": k, "slice_column": "", "slice_value": "", "value": v, "n_rows": self.n_rows}
               for k, v in self.overall.items()]
        for s in self.slices:
            out += [{"metric": k, "slice_column": s["slice_column"], "slice_value": s["slice_value"], "value": v,
                     "n_rows": s["n_rows"]} for k, v in s["metrics"].items()]
        return out


def evaluate(model: Any, holdout: pd.DataFrame, spec: PipelineSpec) -> EvaluationResult:
    y = holdout[spec.target.name].to_numpy()
    score = predict_scores(model, holdout, spec)
    ev = spec.evaluation
    res = EvaluationResult(compute_metrics(y, score, list(ev.metrics), ev.threshold), len(holdout))
    for col in ev.slices:
        values = holdout[col].astype("object").where(holdout[col].notna(), "<null>")
        for val in sorted(values.unique(), key=str):
            mask = (values == val).to_numpy()
            res.slices.append({"slice_column": col, "slice_value": str(val), "n_rows": int(mask.sum()),
                               "metrics": compute_metrics(y[mask], score[mask], list(ev.metrics), ev.threshold)})
    return res
