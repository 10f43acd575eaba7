"""Explanations, pure: global feature importance of a model version (scikit-learn's permutation
importance, at evaluation) and per-prediction contributions (baseline substitution, at scoring:
``scoring.explain``; see the section further down).

Computed on the WHOLE fitted Pipeline, so each importance belongs to a raw spec feature (a category
is shuffled as one column, not per one-hot level) and preprocessing is part of what is measured.
Importance = how much the primary metric drops when that column is shuffled (scikit-learn scorers
are "greater is better", so a lower-is-better metric such as log_loss is handled by its negated
scorer). Seeded (``training.random_state``) and bounded (``explain.importance_rows``), so a re-run
gives the same numbers.

The comparison of two versions (:func:`compare`) says which features gained or lost weight: a
change counts when it is larger than the two versions' standard deviations combined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from airtrain.model.training import _sk_scoring, features_frame
from airtrain.spec import PipelineSpec


class ExplainError(RuntimeError):
    """Permutation importance did not return what was asked for."""


@dataclass(frozen=True)
class Importance:
    feature: str
    mean: float
    std: float


def sample_rows(df: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """At most ``explain.importance_rows`` rows of ``df``, a seeded sample (same rows on a re-run)."""
    n = spec.explain.importance_rows
    if len(df) <= n:
        return df
    return df.sample(n=n, random_state=spec.training.random_state).sort_index()


def model_inputs(model: Any, spec: PipelineSpec) -> list[str]:
    """The raw columns a fitted Pipeline was trained on (its ``feature_names_in_``)."""
    names = getattr(model, "feature_names_in_", None)
    return [str(c) for c in names] if names is not None else list(spec.model_feature_names)


def permutation_importances(model: Any, rows: pd.DataFrame, spec: PipelineSpec) -> list[Importance]:
    """Permutation importance of every input column of ``model`` on ``rows`` (already sampled)."""
    from sklearn.inspection import permutation_importance

    cols = model_inputs(model, spec)
    X = features_frame(rows, spec)
    missing = [c for c in cols if c not in X]
    if missing:
        raise ExplainError(f"{spec.name}: the model needs columns {missing} that the spec's features do not have")
    X = X[cols]
    y = rows[spec.target.name].to_numpy()
    res = permutation_importance(model, X, y, scoring=_sk_scoring(spec.evaluation.primary_metric),
                                 n_repeats=spec.explain.importance_repeats,
                                 random_state=spec.training.random_state, n_jobs=1)
    means = getattr(res, "importances_mean", None)
    stds = getattr(res, "importances_std", None)
    if means is None or stds is None or len(means) != len(cols) or len(stds) != len(cols):
        raise ExplainError(f"{spec.name}: permutation_importance returned no importance per column for {cols}")
    out = [Importance(c, float(m), float(s)) for c, m, s in zip(cols, means, stds, strict=True)]
    if any(not math.isfinite(i.mean) for i in out):
        raise ExplainError(f"{spec.name}: permutation importance is not finite ({out}); the holdout sample "
                           "may hold a single class")
    return out


def compare(challenger: list[Importance], champion: list[Importance] | None) -> dict[str, Any]:
    """Per feature: both importances, the change and the ranks; which features gained/lost weight.

    A change is significant when ``|delta| > std_challenger + std_champion`` (and non-zero). A feature
    only one version uses counts as gained (new) or lost (dropped)."""
    ranked = {i.feature: r for r, i in enumerate(sorted(challenger, key=lambda i: -i.mean), start=1)}
    new = {i.feature: i for i in challenger}
    if champion is None:
        return {"features": [{"feature": f, "challenger": i.mean, "challenger_std": i.std, "rank": ranked[f]}
                             for f, i in sorted(new.items(), key=lambda kv: ranked[kv[0]])],
                "gained": [], "lost": []}
    old = {i.feature: i for i in champion}
    old_rank = {i.feature: r for r, i in enumerate(sorted(champion, key=lambda i: -i.mean), start=1)}
    rows, gained, lost = [], [], []
    for f in list(new) + [f for f in old if f not in new]:
        a, b = new.get(f), old.get(f)
        ma, mb = (a.mean if a else 0.0), (b.mean if b else 0.0)
        delta = ma - mb
        noise = (a.std if a else 0.0) + (b.std if b else 0.0)
        row = {"feature": f, "challenger": a.mean if a else None, "champion": b.mean if b else None,
               "delta": delta, "rank": ranked.get(f), "champion_rank": old_rank.get(f)}
        rows.append(row)
        if abs(delta) > noise and delta != 0:
            (gained if delta > 0 else lost).append(f)
    rows.sort(key=lambda r: -abs(r["delta"]))
    return {"features": rows, "gained": gained, "lost": lost}


def describe(comparison: dict[str, Any], top: int = 3) -> str:
    """One line for the log: the biggest movers."""
    parts = []
    for r in comparison["features"][:top]:
        if "delta" in r:
            parts.append(f"{r['feature']} {r['delta']:+.4f}")
        else:
            parts.append(f"{r['feature']} {r['challenger']:.4f}")
    lead = "gained: " + ", ".join(comparison["gained"] or ["-"]) + "; lost: " + ", ".join(comparison["lost"] or ["-"])
    return lead + " (" + "; ".join(parts) + ")"


# ---- per-prediction explanations (scoring.explain) -------------------------------------------
#
# Baseline substitution ("occlusion"): for each model input j, contribution_j(x) = f(x) - f(x with
# x_j replaced by the training reference r_j), where f is the whole Pipeline's score (probability of
# the positive class, or the prediction for regression) and r_j is the value the model's own fitted
# imputer puts in for a missing x_j (training median for numbers and bools, most frequent category).
# Positive: this row's value of j pushes the score up compared with a typical value; negative: down;
# 0: the row has the typical value (or a missing one, which the imputer turns into the typical value).
# One feature is moved at a time, so interactions are not split (contributions need not sum to
# f(x) - f(r)). Exact for the model scored (no sampling, no approximation), deterministic, and costs
# at most one extra predict per model input - only on the rows whose value differs from r_j.


def reference_values(model: Any, cols: list[str]) -> dict[str, Any]:
    """The training reference of each input column: what the fitted Pipeline's SimpleImputer
    (``statistics_``) fills in for it. Raises :class:`ExplainError` naming the columns it has none for."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    found: dict[str, Any] = {}
    steps = model.steps if isinstance(model, Pipeline) else []
    for _, step in steps:
        if not isinstance(step, ColumnTransformer) or not hasattr(step, "transformers_"):
            continue
        for _, trans, columns in step.transformers_:
            imputer = trans
            if isinstance(trans, Pipeline):
                imputer = trans.steps[0][1]
            if not isinstance(imputer, SimpleImputer) or not hasattr(imputer, "statistics_"):
                continue
            names = [str(c) for c in (columns if isinstance(columns, list | tuple) else list(columns))]
            stats = list(imputer.statistics_)
            if len(stats) != len(names):
                continue
            found.update(zip(names, stats, strict=True))
    missing = [c for c in cols if c not in found]
    if missing:
        raise ExplainError(f"per-prediction explanations need the training reference of every model input, but "
                           f"the model's Pipeline has no fitted SimpleImputer for {missing} (a Pipeline built by "
                           "airtrain.model.training.build_pipeline has one); remove scoring.explain or retrain")
    return {c: found[c] for c in cols}


def _score(model: Any, X: pd.DataFrame, spec: PipelineSpec) -> Any:
    import numpy as np

    if spec.target.task == "binary_classification":
        return np.asarray(model.predict_proba(X)[:, 1], dtype="float64")
    return np.asarray(model.predict(X), dtype="float64")


def contributions(model: Any, df: pd.DataFrame, spec: PipelineSpec, reference: dict[str, Any],
                  base: Any = None) -> tuple[list[str], Any]:
    """Baseline-substitution contributions: (input columns, array rows × columns).

    ``base`` is the model's score of ``df`` when the caller has it already (scoring does)."""
    import numpy as np

    cols = list(reference)
    X = features_frame(df, spec)[cols]
    base = _score(model, X, spec) if base is None else np.asarray(base, dtype="float64")
    out = np.zeros((len(X), len(cols)), dtype="float64")
    for j, c in enumerate(cols):
        ref = reference[c]
        col = X[c]
        # a missing value is imputed to the reference by the model itself: contribution 0
        differs = (col.notna() & (col != ref)).to_numpy()
        if not differs.any():
            continue
        moved = X.loc[differs].copy()
        moved[c] = ref
        out[differs, j] = base[differs] - _score(model, moved, spec)
    if not np.isfinite(out).all():
        raise ExplainError(f"{spec.name}: a feature contribution is not finite")
    return cols, out


def top_k(cols: list[str], contrib: Any, k: int) -> tuple[Any, Any]:
    """The k largest |contributions| per row (ties: spec order): (names rows × k, values rows × k)."""
    import numpy as np

    k = min(int(k), len(cols))
    idx = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    names = np.asarray(cols, dtype=object)[idx]
    values = np.take_along_axis(contrib, idx, axis=1)
    return names, values


def explanation_arrays(model: Any, df: pd.DataFrame, spec: PipelineSpec, reference: dict[str, Any], k: int,
                       base: Any = None) -> tuple[Any, Any]:
    """Two Arrow list columns for the predictions write: feature names (list<string>) and their
    contributions (list<double>), k per row, largest |contribution| first."""
    import numpy as np
    import pyarrow as pa

    cols, contrib = contributions(model, df, spec, reference, base)
    names, values = top_k(cols, contrib, k)
    n, width = names.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype="int32"))
    return (pa.ListArray.from_arrays(offsets, pa.array(names.ravel().tolist(), pa.string())),
            pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), pa.float64())))
