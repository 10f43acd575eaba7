"""Group metrics per sensitive attribute and disparity measures, with fairlearn. Pure.

One ``fairlearn.metrics.MetricFrame`` per attribute computes, per group: count, positives,
selection rate, true/false positive rate and the spec's primary metric (on the scores). The
disparities are derived from the same frame with ``MetricFrame.difference(method="between_groups")``
(max - min across groups), exactly what ``demographic_parity_difference`` (selection rate) and
``equalized_odds_difference`` (max of the TPR and FPR gaps) return, without building three frames.

Groups too small to say anything (fewer than ``fairness.min_group_rows`` rows, or no positive or no
negative label, where fairlearn would report a TPR/FPR of 0 silently) keep their rows in the output
but are left out of the disparities; an attribute with fewer than two eligible groups has no
disparity (None), which a gate treats as "no value" (refused), never as "fair".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airtrain.model.evaluation import compute_metrics
from airtrain.spec import PipelineSpec

DISPARITIES = ("demographic_parity_difference", "equalized_odds_difference")


class FairnessError(RuntimeError):
    """fairlearn did not return what was asked for."""


@dataclass
class AttributeFairness:
    attribute: str
    groups: list[dict[str, Any]] = field(default_factory=list)  # group, metric -> value (incl. count)
    disparities: dict[str, float | None] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)  # groups left out of the disparities


def group_values(col: pd.Series) -> pd.Series:
    """Group labels as text (nulls are their own group ``<null>``)."""
    return col.astype("object").where(col.notna(), "<null>").map(str)


def evaluate(y: np.ndarray, score: np.ndarray, frame: pd.DataFrame, spec: PipelineSpec
             ) -> dict[str, AttributeFairness]:
    """Fairness of one model's scores ``score`` on rows ``frame`` (labels ``y``) per sensitive attribute."""
    from fairlearn.metrics import MetricFrame, count, false_positive_rate, selection_rate, true_positive_rate

    fair = spec.fairness
    if fair is None:
        return {}
    thr = spec.evaluation.threshold
    primary = spec.evaluation.primary_metric
    y = np.asarray(y).astype(int)

    def primary_metric(y_true, y_score):
        return compute_metrics(np.asarray(y_true), np.asarray(y_score), [primary], thr).get(primary, float("nan"))

    def at_threshold(fn):  # a label metric applied to the scores cut at evaluation.threshold
        return lambda y_true, y_score: fn(y_true, (np.asarray(y_score) >= thr).astype(int))

    rates = {"selection_rate": at_threshold(selection_rate), "tpr": at_threshold(true_positive_rate),
             "fpr": at_threshold(false_positive_rate)}
    metrics = {"count": count, "positives": lambda t, p: float(np.sum(t)), **rates, primary: primary_metric}
    score = np.asarray(score, dtype="float64")
    out: dict[str, AttributeFairness] = {}
    for attr in fair.sensitive:
        groups = group_values(frame[attr]).to_numpy()
        # one frame per attribute with every metric (each frame costs O(n) Python work)
        mf = MetricFrame(metrics=metrics, y_true=y, y_pred=score, sensitive_features=groups)
        by = mf.by_group
        if not isinstance(by, pd.DataFrame) or set(metrics) - set(by.columns):
            raise FairnessError(f"{spec.name}: fairlearn MetricFrame returned no per-group table for {attr!r}")
        res = AttributeFairness(attr)
        eligible = []
        for g, row in by.iterrows():
            n, pos = int(row["count"]), int(row["positives"])
            vals = {k: float(row[k]) for k in ("selection_rate", "tpr", "fpr", primary)}
            res.groups.append({"group": str(g), "n_rows": n, "positives": pos, **vals})
            if n >= fair.min_group_rows and 0 < pos < n:
                eligible.append(str(g))
            else:
                res.excluded.append(str(g))
        if len(eligible) < 2:
            res.disparities = {d: None for d in DISPARITIES}
        else:
            mask = np.isin(groups, eligible)
            sub = mf if not res.excluded else MetricFrame(
                metrics=rates, y_true=y[mask], y_pred=score[mask], sensitive_features=groups[mask])
            diff = sub.difference(method="between_groups")
            res.disparities = {"demographic_parity_difference": float(diff["selection_rate"]),
                               "equalized_odds_difference": float(max(diff["tpr"], diff["fpr"]))}
        out[attr] = res
    return out


def summary(result: dict[str, AttributeFairness]) -> dict[str, dict[str, float | None]]:
    """``{attribute: {disparity: value}}``: the small dict the gate and XCom use."""
    return {a: {k: (None if v is None or not math.isfinite(v) else round(v, 6)) for k, v in r.disparities.items()}
            for a, r in result.items()}


def rows(result: dict[str, AttributeFairness], primary: str) -> list[dict[str, Any]]:
    """Long rows (attribute, group_value, metric, value, n_rows); disparities have group_value ''."""
    out = []
    for attr, r in result.items():
        for g in r.groups:
            for m in ("selection_rate", "tpr", "fpr", primary, "positives"):
                v = g[m]
                out.append({"attribute": attr, "group_value": g["group"], "metric": m,
                            "value": None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v,
                            "n_rows": g["n_rows"]})
        n = sum(g["n_rows"] for g in r.groups if g["group"] not in r.excluded)
        for m, v in r.disparities.items():
            out.append({"attribute": attr, "group_value": "", "metric": m, "value": v, "n_rows": n})
    return out
