"""Performance estimated before the labels arrive: CBPE for binary classifiers, DLE for regressors.

The demo's labels arrive 30 days late. Until then the monitor sees the inputs and the champion's
predictions only; this module turns those into an estimate of the metrics the labels will show,
each with a sampling band, from what was learned on the version's own holdout (where labels were
known):

* **Binary classification - confidence-based performance estimation (CBPE).** The model's scores
  are calibrated on its holdout (isotonic regression of the label on the score,
  :func:`fit_calibrator`; the step function is stored as small JSON with the version, no pickle).
  In a window without labels, the calibrated probability ``p_i`` of each row is the chance that its
  label is 1, so the expected confusion matrix at the spec's threshold is
  ``TP = Σ p_i·[s_i ≥ t]``, ``FP = Σ (1-p_i)·[s_i ≥ t]``, ``FN = Σ p_i·[s_i < t]``,
  ``TN = Σ (1-p_i)·[s_i < t]``, and the expected ROC and precision-recall curves are the same sums
  taken at every distinct score (the model's raw score ranks the rows, as it does when the realized
  metric is computed). :func:`estimate_classification` derives every classification metric the spec
  allows from them: ``roc_auc`` (area under the expected ROC curve), ``average_precision`` (the
  expected precision-recall curve), ``precision``, ``recall``, ``f1``, ``accuracy`` (the expected
  confusion matrix), ``log_loss`` and ``brier`` (their exact expectations, ``-mean(p·log s +
  (1-p)·log(1-s))`` and ``mean((s-p)² + p(1-p))``, on the raw score ``s`` the realized metric uses).
* **Regression - direct loss estimation (DLE).** Small gradient-boosted models of the per-row loss
  (absolute error for ``mae``, squared error for ``rmse``, absolute percentage error for ``mape``)
  are trained on the holdout from the model's own inputs and its prediction
  (:func:`fit_loss_estimator`, serialised with skops like the model artifacts); in a window their
  mean predicted loss is the estimate (``rmse`` = the root of the mean predicted squared error).
  ``r2`` has no per-row loss (its denominator is the window's label variance): it is estimated from
  the sampling draws below.

**Sampling band.** Even a perfect estimate of the expected metric misses the realized one by the
luck of the window's labels. The band is the central ``level`` interval (95% by default) of the
metric over ``draws`` simulated label sets (400 by default, seeded): for a classifier each label
drawn as Bernoulli(``p_i``), for a regressor each error drawn as the row's predicted error scale
(the root of its predicted squared error) times a holdout residual standardised the same way
(cross-fitted, so the holdout rows do not judge their own fit). The realized value of a window
falls inside the band at the nominal rate when the calibration holds. This is a predictive
interval for the *realized* metric - what the monitor compares with when labels arrive - rather
than NannyML's standard error of the estimate; it costs O(draws × rows) of vectorised arithmetic
(every metric of a draw is a sum over rows sorted once), ~0.1-0.5 s at the monitor's 50,000-row
sample (docs/MONITORING.md has the figures).

**Assumption: covariate shift only.** Both methods assume that the relation between inputs and
label is the one seen on the holdout (``P(y | x)`` unchanged; CBPE needs the slightly stronger
``P(y | score)`` unchanged, which holds where the model is well specified). Inputs may move; when
the relation itself moves (concept drift), the estimate stays confident and wrong, which is why the
realized-performance trigger stays for when the labels arrive. Rows in regions the holdout never
saw inherit the calibration of the nearest scores (isotonic clips; the loss trees are flat beyond
their last split), so a shift far outside the holdout is estimated optimistically.

Everything here is pure (NumPy; scikit-learn and skops imported inside the functions that need
them): no warehouse, no Airflow. Refusals raise :class:`EstimationError` (permanent: the same
inputs cannot succeed) with what is wrong and what to change.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from airtrain.model.calibration import (
    CALIBRATOR_FORMAT,
    CLASSIFICATION_METRICS,
    LOSS_ESTIMATOR_FORMAT,
    MIN_CLASS_ROWS,
    MIN_FIT_ROWS,
    REGRESSION_METRICS,
    Calibrator,
    EstimationError,
    LossEstimator,
    _ape,
    _metrics,
    _scores,
    fit_calibrator,
    fit_loss_estimator,
    model_inputs,
)

__all__ = ["CALIBRATOR_FORMAT", "CLASSIFICATION_METRICS", "DEFAULT_DRAWS", "DEFAULT_LEVEL", "LOSS_ESTIMATOR_FORMAT",
           "MIN_CLASS_ROWS", "MIN_FIT_ROWS", "MIN_WINDOW_ROWS", "REGRESSION_METRICS", "Calibrator", "Estimate",
           "EstimationError", "LossEstimator", "estimate_classification", "estimate_regression",
           "expected_confusion", "fit_calibrator", "fit_loss_estimator", "model_inputs", "window_seed"]

#: a window needs at least this many rows to be estimated (the monitor's own min_rows is usually higher)
MIN_WINDOW_ROWS = 50
DEFAULT_LEVEL = 0.95
DEFAULT_DRAWS = 400
#: elements of one block of simulated draws (draws × rows): bounds the memory of a band (~50 MB)
_BLOCK = 1_000_000
#: a window with more of its rows outside the fitted range than this gets a note saying so
OUTSIDE_NOTE = 0.05


def _check_level(level: float, draws: int) -> None:
    if not 0.5 <= level < 1:
        raise EstimationError(f"band level {level} must be in [0.5, 1)")
    if draws < 50:
        raise EstimationError(f"{draws} draws are too few for a percentile band; use at least 50")


def window_seed(*parts: Any) -> int:
    """A stable seed for a window's draws from what identifies it (e.g. pipeline, version, window
    end): the same window always gets the same band, in any process (unlike ``hash()``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


# ---------------------------------------------------------------------------------------------
# estimates
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """One estimated metric of one window: the point estimate and its sampling band."""

    metric: str
    value: float
    lower: float | None
    upper: float | None
    n_rows: int
    method: str  # "cbpe" | "dle" | "draws"
    level: float
    draws: int
    #: share of the window's rows outside what the estimator was fitted on (scores beyond the
    #: calibrator's range; inputs beyond the loss models' holdout range): there it extrapolates
    outside: float = 0.0
    note: str = ""

    def contains(self, realized: float) -> bool:
        return self.lower is not None and self.upper is not None and self.lower <= realized <= self.upper

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outside_note(outside: float, what: str) -> str:
    if not outside > OUTSIDE_NOTE:
        return ""
    return (f"{outside:.0%} of the rows are outside the {what} the estimator was fitted on: there it extrapolates "
            "and the estimate is likely optimistic")


def _band(values: np.ndarray, level: float) -> tuple[float | None, float | None, str]:
    """The central ``level`` percentile interval of the draws (None when too few draws are defined)."""
    ok = values[np.isfinite(values)]
    if len(ok) < 0.95 * len(values):
        return None, None, f"{len(values) - len(ok)} of {len(values)} draws left the metric undefined: no band"
    lo, hi = np.quantile(ok, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi), ""

# ---------------------------------------------------------------------------------------------
# CBPE
# ---------------------------------------------------------------------------------------------


def expected_confusion(p: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The expected confusion matrix at ``threshold`` (predicted positive: score >= threshold)."""
    pred = scores >= threshold
    return {"tp": float(p[pred].sum()), "fp": float((1 - p[pred]).sum()), "fn": float(p[~pred].sum()),
            "tn": float((1 - p[~pred]).sum())}


def _ratio(a: Any, b: Any) -> Any:
    """a / b with 0 where b is 0 (scikit-learn's zero_division=0, as the realized metrics use)."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _from_confusion(name: str, tp: Any, fp: Any, fn: Any, tn: Any) -> Any:
    if name == "precision":
        return _ratio(tp, tp + fp)
    if name == "recall":
        return _ratio(tp, tp + fn)
    if name == "f1":
        return _ratio(2 * tp, 2 * tp + fp + fn)
    return _ratio(tp + tn, tp + fp + fn + tn)  # accuracy


class _Ranked:
    """Rows sorted by descending score once, with the ends of tied-score groups and midranks."""

    def __init__(self, scores: np.ndarray):
        self.order = np.argsort(-scores, kind="stable")
        s = scores[self.order]
        self.scores = s
        self.n = len(s)
        # last index of each group of equal scores (in descending order)
        self.ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
        starts = np.r_[0, self.ends[:-1] + 1]
        # ascending midranks (1-based) for the Mann-Whitney form of ROC AUC, ties averaged
        asc_mid = self.n - (starts + self.ends) / 2.0
        self.midrank = np.repeat(asc_mid, self.ends - starts + 1)


def _expected_curves(r: _Ranked, p_sorted: np.ndarray) -> tuple[float | None, float | None]:
    """(expected ROC AUC, expected average precision) from calibrated probabilities in rank order."""
    tps = np.cumsum(p_sorted)[r.ends]
    fps = (r.ends + 1) - tps
    pos, neg = tps[-1], fps[-1]
    auc = ap = None
    if pos > 0 and neg > 0:
        tpr = np.r_[0.0, tps / pos]
        fpr = np.r_[0.0, fps / neg]
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    if pos > 0:
        precision = tps / (r.ends + 1)
        recall = np.r_[0.0, tps / pos]
        ap = float(np.sum(np.diff(recall) * precision))
    return auc, ap


class _Posterior:
    """Calibrated probabilities of the window's rows, drawn from the calibrator's posterior: each
    isotonic step's rate from Beta(positives + 1/2, negatives + 1/2) of its holdout rows (Jeffreys),
    the draw made non-decreasing again by pool-adjacent-violators (weighted by the steps' rows), the
    rows between steps interpolated as :meth:`Calibrator.apply` does."""

    def __init__(self, cal: Calibrator, s: np.ndarray, rng: np.random.Generator):
        x = np.asarray(cal.x)
        self.step, rate, self.rows = cal.steps()
        self.a, self.b = rate * self.rows + 0.5, (1 - rate) * self.rows + 0.5
        if len(x) == 1:
            self.lo = self.hi = np.zeros(len(s), dtype=int)
            self.w = np.zeros(len(s))
        else:
            self.hi = np.clip(np.searchsorted(x, s, side="right"), 1, len(x) - 1)
            self.lo = self.hi - 1
            self.w = np.clip((s - x[self.lo]) / (x[self.hi] - x[self.lo]), 0.0, 1.0)
        self.rng = rng

    def draw(self, k: int) -> np.ndarray:
        from sklearn.isotonic import isotonic_regression

        rates = self.rng.beta(self.a, self.b, size=(k, len(self.a)))
        # each draw projected back onto non-decreasing maps (pooled like the calibrator's own fit)
        rates = np.stack([isotonic_regression(r, sample_weight=self.rows) for r in rates])
        y = rates[:, self.step]
        return (1 - self.w) * y[:, self.lo] + self.w * y[:, self.hi]


def _draw_classification(r: _Ranked, probs: Any, s_sorted: np.ndarray, metrics: list[str],
                         threshold: float, draws: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each metric on ``draws`` label sets drawn as Bernoulli(p), in blocks of bounded memory;
    ``probs(k)`` gives the (k, rows) probabilities of k draws (rows in rank order)."""
    n = r.n
    out = {m: np.empty(draws) for m in metrics}
    pred = s_sorted >= threshold
    n_pred = int(pred.sum())
    clipped = np.clip(s_sorted, 1e-15, 1 - 1e-15)  # as evaluation.compute_metrics clips for log_loss
    log_ratio = np.log(clipped) - np.log1p(-clipped)
    log_neg = float(np.log1p(-clipped).sum())
    brier_w = 1 - 2 * s_sorted
    brier_c = float(np.sum(s_sorted ** 2))
    block = max(1, _BLOCK // max(n, 1))
    for b0 in range(0, draws, block):
        b1 = min(draws, b0 + block)
        Y = rng.random((b1 - b0, n)) < probs(b1 - b0)  # (block, n) bool, rows in rank order
        n1 = Y.sum(axis=1).astype("float64")
        n0 = n - n1
        with np.errstate(divide="ignore", invalid="ignore"):
            if "roc_auc" in out:
                rank_sum = Y @ r.midrank
                auc = (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)
                out["roc_auc"][b0:b1] = np.where((n1 > 0) & (n0 > 0), auc, np.nan)
            if "average_precision" in out:
                tp_at = np.cumsum(Y, axis=1, dtype="int32")[:, r.ends].astype("float64")
                prec = tp_at / (r.ends + 1)
                d_tp = np.diff(tp_at, axis=1, prepend=0.0)
                ap = np.sum(d_tp * prec, axis=1) / n1
                out["average_precision"][b0:b1] = np.where(n1 > 0, ap, np.nan)
            conf = [m for m in ("precision", "recall", "f1", "accuracy") if m in out]
            if conf:
                tp = Y[:, pred].sum(axis=1).astype("float64")
                fp, fn = n_pred - tp, n1 - tp
                tn = n - tp - fp - fn
                for m in conf:
                    out[m][b0:b1] = _from_confusion(m, tp, fp, fn, tn)
            if "log_loss" in out:
                out["log_loss"][b0:b1] = -(Y @ log_ratio + log_neg) / n
            if "brier" in out:
                out["brier"][b0:b1] = (brier_c + Y @ brier_w) / n
    return out


def estimate_classification(scores: Any, calibrator: Calibrator, metrics: Sequence[str] = CLASSIFICATION_METRICS,
                            threshold: float = 0.5, *, level: float = DEFAULT_LEVEL, draws: int = DEFAULT_DRAWS,
                            seed: int = 0, min_rows: int = MIN_WINDOW_ROWS,
                            calibration_uncertainty: bool = True) -> dict[str, Estimate]:
    """CBPE: each metric of a window's raw scores estimated from their calibrated probabilities.

    ``scores`` are the model's positive-class probabilities for the window's rows (the monitor's
    sample); ``threshold`` is the spec's ``evaluation.threshold``. Returns ``{metric: Estimate}``;
    a metric the expected labels leave undefined (``roc_auc`` when every calibrated probability is
    0 or every one is 1) is left out, never guessed."""
    wanted = _metrics(metrics, CLASSIFICATION_METRICS, "a binary classifier")
    _check_level(level, draws)
    s = _scores(scores, "window", probability=True)
    if len(s) < min_rows:
        raise EstimationError(f"window has {len(s)} rows; at least {min_rows} are needed to estimate performance")
    p = calibrator.apply(s)
    r = _Ranked(s)
    s_sorted, p_sorted = s[r.order], p[r.order]
    point: dict[str, float | None] = {}
    auc, ap = _expected_curves(r, p_sorted)
    point["roc_auc"], point["average_precision"] = auc, ap
    c = expected_confusion(p, s, threshold)
    for m in ("precision", "recall", "f1", "accuracy"):
        point[m] = float(_from_confusion(m, c["tp"], c["fp"], c["fn"], c["tn"]))
    clipped = np.clip(s, 1e-15, 1 - 1e-15)
    point["log_loss"] = float(-np.mean(p * np.log(clipped) + (1 - p) * np.log1p(-clipped)))
    point["brier"] = float(np.mean((s - p) ** 2 + p * (1 - p)))
    rng = np.random.default_rng(seed)
    if calibration_uncertainty:
        probs = _Posterior(calibrator, s_sorted, rng).draw
    else:
        def probs(k: int) -> np.ndarray:
            return p_sorted
    sims = _draw_classification(r, probs, s_sorted, wanted, threshold, draws, rng)
    outside = float(np.mean((s < calibrator.x[0]) | (s > calibrator.x[-1])))
    out = {}
    for m in wanted:
        if point[m] is None:
            continue
        lo, hi, note = _band(sims[m], level)
        note = "; ".join(x for x in (note, _outside_note(outside, "score range")) if x)
        out[m] = Estimate(m, point[m], lo, hi, len(s), "cbpe", level, draws, outside, note)
    return out


def estimate_regression(X: Any, pred: Any, estimator: LossEstimator, metrics: Sequence[str] = ("rmse", "mae"), *,
                        level: float = DEFAULT_LEVEL, draws: int = DEFAULT_DRAWS, seed: int = 0,
                        min_rows: int = MIN_WINDOW_ROWS) -> dict[str, Estimate]:
    """DLE: ``rmse``/``mae``/``mape`` of a window from the predicted per-row losses; ``r2`` from the
    draws. Each band: the central ``level`` interval of the metric over ``draws`` simulated error
    sets (error = row scale × a resampled holdout residual), shifted to centre on the DLE estimate."""
    wanted = _metrics(metrics, REGRESSION_METRICS, "a regressor")
    _check_level(level, draws)
    f = _scores(pred, "window", probability=False)
    if len(f) < min_rows:
        raise EstimationError(f"window has {len(f)} rows; at least {min_rows} are needed to estimate performance")
    Xa = np.asarray(X, dtype="float64").reshape(len(f), -1)
    if Xa.shape[1] != estimator.n_inputs:
        raise EstimationError(f"window has {Xa.shape[1]} model inputs but the loss estimator was trained on "
                              f"{estimator.n_inputs}: it belongs to another model version")
    missing = [m for m, k in (("mae", "abs"), ("mape", "ape")) if m in wanted and k not in estimator.models]
    if missing:
        raise EstimationError(f"the loss estimator was trained without a model for {missing}; refit it with them")
    inputs = np.column_stack([Xa, f])
    pred_loss = {k: np.maximum(m.predict(inputs), 0.0) for k, m in estimator.models.items()}
    point: dict[str, float] = {}
    if "rmse" in wanted:
        point["rmse"] = float(math.sqrt(pred_loss["sq"].mean()))
    if "mae" in wanted:
        point["mae"] = float(pred_loss["abs"].mean())
    if "mape" in wanted:
        point["mape"] = float(pred_loss["ape"].mean())
    scale = np.sqrt(pred_loss["sq"])
    z = np.asarray(estimator.residuals, "float64")
    rng = np.random.default_rng(seed)
    sims = {m: np.empty(draws) for m in wanted}
    n = len(f)
    block = max(1, _BLOCK // n)
    for b0 in range(0, draws, block):
        b1 = min(draws, b0 + block)
        e = scale * z[rng.integers(0, len(z), size=(b1 - b0, n))]
        if "rmse" in sims:
            sims["rmse"][b0:b1] = np.sqrt(np.mean(e ** 2, axis=1))
        if "mae" in sims:
            sims["mae"][b0:b1] = np.mean(np.abs(e), axis=1)
        if "mape" in sims or "r2" in sims:
            yb = f + e
            if "mape" in sims:
                sims["mape"][b0:b1] = np.mean(_ape(e, yb), axis=1)
            if "r2" in sims:
                sst = np.sum((yb - yb.mean(axis=1, keepdims=True)) ** 2, axis=1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    sims["r2"][b0:b1] = np.where(sst > 0, 1 - np.sum(e ** 2, axis=1) / sst, np.nan)
    outside = estimator.outside(inputs)
    out = {}
    for m in wanted:
        lo, hi, note = _band(sims[m], level)
        note = "; ".join(x for x in (note, _outside_note(outside, "input ranges")) if x)
        if m in point:  # the draws give the spread; the DLE estimate is the centre
            mid = float(np.median(sims[m][np.isfinite(sims[m])]))
            lo = None if lo is None else point[m] - (mid - lo)
            hi = None if hi is None else point[m] + (hi - mid)
            out[m] = Estimate(m, point[m], lo, hi, n, "dle", level, draws, outside, note)
        else:
            ok = sims[m][np.isfinite(sims[m])]
            out[m] = Estimate(m, float(np.median(ok)) if len(ok) else float("nan"), lo, hi, n, "draws", level,
                              draws, outside, note)
    return out
