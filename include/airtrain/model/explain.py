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

import logging
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from airtrain.model.training import _sk_scoring, features_frame
from airtrain.spec import PipelineSpec

log = logging.getLogger(__name__)


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
# at most one extra predict per model input - only on the rows whose value differs from r_j. For the
# Pipelines build_pipeline makes (per-column imputers, scaler and one-hot encoder), the rows are
# preprocessed once and only the estimator predicts again, on the preprocessed matrix with x_j's
# columns set to those of r_j: the same numbers, checked against the whole-Pipeline path on a few rows
# of every batch (1.2-1.3x faster on the churn model; the estimator's predictions are what is left).


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


def _score(model: Any, X: Any, spec: PipelineSpec) -> Any:
    import numpy as np

    if spec.target.task == "binary_classification":
        return np.asarray(model.predict_proba(X)[:, 1], dtype="float64")
    return np.asarray(model.predict(X), dtype="float64")


#: the scikit-learn transformers that map each input column on its own (so replacing x_j by r_j before
#: them equals replacing x_j's output columns by those of r_j after them), with how many outputs each
_PER_COLUMN = ("SimpleImputer", "StandardScaler", "OneHotEncoder")
#: rows of each batch on which the preprocessed-matrix path is checked against the exact one
CHECK_ROWS = 16


def _widths(trans: Any, n: int) -> list[int] | None:
    """How many output columns each of the ``n`` inputs of a fitted transformer (or Pipeline of them)
    becomes, when every step works column by column; None when one step is anything else."""
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in trans.steps] if isinstance(trans, Pipeline) else [trans]
    widths = [1] * n
    for i, step in enumerate(steps):
        kind = type(step).__name__
        if kind not in _PER_COLUMN or type(step).__module__.split(".")[0] != "sklearn":
            return None
        if kind == "SimpleImputer" and (step.add_indicator or len(getattr(step, "statistics_", [])) != n):
            return None  # an indicator adds columns; an all-missing training column is dropped
        if kind == "OneHotEncoder":
            if (i != len(steps) - 1 or getattr(step, "drop_idx_", None) is not None or step.sparse_output
                    or any(c is not None for c in (getattr(step, "infrequent_categories_", None) or []))):
                return None
            widths = [len(c) for c in step.categories_]
    return widths if len(widths) == n else None


def column_blocks(model: Any) -> dict[str, slice] | None:
    """Where each raw input's values are in the model's preprocessed matrix, for a Pipeline of a
    ColumnTransformer whose transformers all work column by column (those
    :func:`airtrain.model.training.build_pipeline` makes) and an estimator; None for any other model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    pre = model.steps[0][1]
    if not isinstance(pre, ColumnTransformer) or not hasattr(pre, "output_indices_") or pre.sparse_output_:
        return None
    blocks: dict[str, slice] = {}
    for name, trans, columns in pre.transformers_:
        if isinstance(trans, str) and trans == "drop":  # the remainder (its columns may be given by position)
            continue
        names = list(columns) if isinstance(columns, list | tuple) else None
        if names is None or not all(isinstance(c, str) for c in names):
            return None
        if not names:
            continue
        widths = _widths(trans, len(names))
        where = pre.output_indices_.get(name)
        if widths is None or where is None or sum(widths) != where.stop - where.start:
            return None
        start = where.start
        for c, w in zip(names, widths, strict=True):
            blocks[c] = slice(start, start + w)
            start += w
    return blocks


def _differs(col: pd.Series, ref: Any) -> Any:
    # a missing value is imputed to the reference by the model itself: contribution 0
    return (col.notna() & (col != ref)).to_numpy()


def _exact(model: Any, X: pd.DataFrame, spec: PipelineSpec, cols: list[str], reference: dict[str, Any],
           base: Any) -> Any:
    """Contributions by re-scoring the whole Pipeline with each column moved (any model)."""
    import numpy as np

    out = np.zeros((len(X), len(cols)), dtype="float64")
    for j, c in enumerate(cols):
        differs = _differs(X[c], reference[c])
        if not differs.any():
            continue
        moved = X.loc[differs].copy()
        moved[c] = reference[c]
        out[differs, j] = base[differs] - _score(model, moved, spec)
    return out


def _preprocessed(model: Any, X: pd.DataFrame, spec: PipelineSpec, cols: list[str], reference: dict[str, Any],
                  blocks: dict[str, slice]) -> tuple[Any, Any] | None:
    """(scores, contributions) by preprocessing the rows once and moving each column's block of the
    preprocessed matrix to the reference's: the same numbers as :func:`_exact` (the transformers work
    column by column) for one preprocessing instead of one per input. None when the output is not a
    dense array or a column has no block."""
    import numpy as np

    pre, est = model.steps[0][1], model.steps[-1][1]
    if len(X) == 0 or any(c not in blocks for c in cols):
        return None
    Z = pre.transform(X)
    first = X.iloc[:1].copy()  # one row of the references, typed as the rows are
    for c in cols:
        first[c] = reference[c]
    ref = pre.transform(first)
    if not isinstance(Z, np.ndarray) or not isinstance(ref, np.ndarray):
        return None
    base = _score(est, Z, spec)
    out = np.zeros((len(X), len(cols)), dtype="float64")
    for j, c in enumerate(cols):
        differs = _differs(X[c], reference[c])
        if not differs.any():
            continue
        moved = Z[differs]  # a copy (boolean indexing)
        moved[:, blocks[c]] = ref[0, blocks[c]]
        out[differs, j] = base[differs] - _score(est, moved, spec)
    return base, out


def score_and_contributions(model: Any, df: pd.DataFrame, spec: PipelineSpec, reference: dict[str, Any],
                            base: Any = None) -> tuple[Any, list[str], Any]:
    """(scores, input columns, contributions rows × columns): baseline substitution.

    For the Pipelines :func:`airtrain.model.training.build_pipeline` makes, the rows are preprocessed
    once and each column's block of the preprocessed matrix is moved (:func:`column_blocks`); that path
    is checked against the exact one on the first :data:`CHECK_ROWS` rows of every call, and the exact
    path is used for the call when they differ (or for any other model). ``base``: the caller's scores
    of ``df`` (used by the exact path)."""
    import numpy as np

    cols = list(reference)
    X = features_frame(df, spec)[cols]
    fast = None
    blocks = column_blocks(model)
    if blocks is not None:
        fast = _preprocessed(model, X, spec, cols, reference, blocks)
    if fast is not None:
        head = X.iloc[:CHECK_ROWS]
        want = _exact(model, head, spec, cols, reference, _score(model, head, spec))
        if not np.allclose(fast[1][: len(head)], want, rtol=1e-9, atol=1e-12):
            log.warning("%s: contributions on the preprocessed matrix differ from the exact ones (largest "
                        "difference %.3g): using the exact path", spec.name, float(np.abs(fast[1][: len(head)] - want).max()))
            fast = None
    if fast is not None:
        base, out = fast
    else:
        base = _score(model, X, spec) if base is None else np.asarray(base, dtype="float64")
        out = _exact(model, X, spec, cols, reference, base)
    if not np.isfinite(out).all():
        raise ExplainError(f"{spec.name}: a feature contribution is not finite")
    return base, cols, out


def contributions(model: Any, df: pd.DataFrame, spec: PipelineSpec, reference: dict[str, Any],
                  base: Any = None) -> tuple[list[str], Any]:
    """Baseline-substitution contributions: (input columns, array rows × columns).

    ``base`` is the model's score of ``df`` when the caller has it already."""
    _, cols, out = score_and_contributions(model, df, spec, reference, base)
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
    return score_with_explanations(model, df, spec, reference, k, base)[1]


def score_with_explanations(model: Any, df: pd.DataFrame, spec: PipelineSpec, reference: dict[str, Any], k: int,
                            base: Any = None) -> tuple[Any, tuple[Any, Any]]:
    """The scores of ``df`` and :func:`explanation_arrays`' two columns, in one pass (scoring)."""
    import numpy as np
    import pyarrow as pa

    scores, cols, contrib = score_and_contributions(model, df, spec, reference, base)
    names, values = top_k(cols, contrib, k)
    n, width = names.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype="int32"))
    return scores, (pa.ListArray.from_arrays(offsets, pa.array(names.ravel().tolist(), pa.string())),
                    pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), pa.float64())))
