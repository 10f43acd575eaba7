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
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from airtrain.artifacts import ModelArtifact, dump_model, load_model
from airtrain.errors import PermanentError

CLASSIFICATION_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall", "accuracy", "log_loss",
                          "brier")
REGRESSION_METRICS = ("rmse", "mae", "mape", "r2")
#: the holdout a calibrator / loss estimator is fitted on needs at least this many rows ...
MIN_FIT_ROWS = 200
#: ... and, for a calibrator, at least this many rows of each class
MIN_CLASS_ROWS = 20
#: a window needs at least this many rows to be estimated (the monitor's own min_rows is usually higher)
MIN_WINDOW_ROWS = 50
DEFAULT_LEVEL = 0.95
DEFAULT_DRAWS = 400
CALIBRATOR_FORMAT = "airtrain.calibrator.isotonic/1"
LOSS_ESTIMATOR_FORMAT = "airtrain.loss_estimator.dle/1"
#: elements of one block of simulated draws (draws × rows): bounds the memory of a band (~50 MB)
_BLOCK = 1_000_000
#: a window with more of its rows outside the fitted range than this gets a note saying so
OUTSIDE_NOTE = 0.05
_EPS = float(np.finfo("float64").eps)  # sklearn's mean_absolute_percentage_error guards |y| with this


class EstimationError(PermanentError, ValueError):
    """Performance cannot be estimated from these inputs; the message says why and what to change."""


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------

def _floats(values: Any, what: str) -> np.ndarray:
    try:
        a = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as exc:
        raise EstimationError(f"{what}: not numeric ({type(exc).__name__}: {exc})") from None
    if a.ndim > 1 and a.shape[1:] != (1,) * (a.ndim - 1):
        raise EstimationError(f"{what}: expected one value per row, got an array of shape {a.shape} (for a "
                              "classifier, pass predict_proba's positive-class column)")
    return a.ravel()


def _scores(values: Any, what: str, *, probability: bool) -> np.ndarray:
    s = _floats(values, what)
    bad = int(np.count_nonzero(~np.isfinite(s)))
    if bad:
        raise EstimationError(f"{what}: {bad} of {len(s)} scores are NaN or infinite; the model's predictions "
                              "must be finite (was the window scored by this version?)")
    if probability and len(s) and (s.min() < 0 or s.max() > 1):
        raise EstimationError(f"{what}: scores must be probabilities in [0, 1] (got {s.min():.4g} .. {s.max():.4g}); "
                              "pass predict_proba's positive-class column")
    return s


def _labels(values: Any, n: int, what: str) -> np.ndarray:
    y = _floats(values, f"{what} labels")
    if len(y) != n:
        raise EstimationError(f"{what}: {len(y)} labels for {n} scores")
    if np.count_nonzero(~np.isfinite(y)):
        raise EstimationError(f"{what}: {int(np.count_nonzero(~np.isfinite(y)))} labels are missing")
    return y


def _metrics(metrics: Sequence[str], allowed: tuple[str, ...], task: str) -> list[str]:
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise EstimationError(f"cannot estimate {unknown} for {task}; estimable: {list(allowed)}")
    return list(dict.fromkeys(metrics))


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
# calibration (binary classification)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibrator:
    """An isotonic map from the model's score to the probability of the positive class.

    ``x``/``y`` are the thresholds of scikit-learn's ``IsotonicRegression``: the map is their linear
    interpolation, clipped to the first/last value outside ``x`` (``out_of_bounds="clip"``), so
    :meth:`apply` needs NumPy only. ``n`` is, per threshold, how many holdout rows its constant
    step holds: the band draws each step's rate from its Beta posterior, so the band carries the
    calibration's own uncertainty (a small holdout calibrates loosely). ``curve`` is the holdout's
    reliability curve (score deciles: mean score, observed rate, mean calibrated probability, rows)
    for the model card."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    n: tuple[int, ...]
    n_rows: int
    positives: int
    brier_raw: float
    brier_calibrated: float
    curve: tuple[dict[str, float], ...] = field(default_factory=tuple)

    def apply(self, scores: Any) -> np.ndarray:
        s = _scores(scores, "calibrator.apply", probability=False)
        return np.interp(s, np.asarray(self.x), np.asarray(self.y))

    def steps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(step index of every threshold, each step's rate, each step's rows)."""
        y = np.asarray(self.y)
        new = np.r_[True, y[1:] != y[:-1]]
        step = np.cumsum(new) - 1
        return step, y[new], np.asarray(self.n)[new]

    def to_json(self) -> str:
        return json.dumps({"format": CALIBRATOR_FORMAT, "x": list(self.x), "y": list(self.y), "n": list(self.n),
                           "n_rows": self.n_rows, "positives": self.positives, "brier_raw": self.brier_raw,
                           "brier_calibrated": self.brier_calibrated, "curve": list(self.curve)},
                          separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes | dict) -> Calibrator:
        """Parse and check a stored calibrator; anything malformed is refused (never half-used)."""
        try:
            d = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        except (ValueError, TypeError) as exc:
            raise EstimationError(f"stored calibrator is not JSON: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != CALIBRATOR_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise EstimationError(f"stored calibrator has format {got!r}, expected {CALIBRATOR_FORMAT!r}")
        try:
            x = np.asarray(d["x"], dtype="float64")
            y = np.asarray(d["y"], dtype="float64")
            n = np.asarray(d["n"], dtype="float64")
            cal = cls(tuple(map(float, x)), tuple(map(float, y)), tuple(int(v) for v in n), int(d["n_rows"]),
                      int(d["positives"]), float(d["brier_raw"]), float(d["brier_calibrated"]),
                      tuple({str(k): float(v) for k, v in b.items()} for b in d.get("curve", [])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EstimationError(f"stored calibrator is malformed: {type(exc).__name__}: {exc}") from None
        if x.ndim != 1 or len(x) < 1 or len(x) != len(y) or len(x) != len(n):
            raise EstimationError(f"stored calibrator is malformed: {len(x)} thresholds, {len(y)} values, "
                                  f"{len(n)} counts")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(n))):
            raise EstimationError("stored calibrator is malformed: non-finite thresholds, values or counts")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0) or y.min() < 0 or y.max() > 1:
            raise EstimationError("stored calibrator is malformed: it must be an increasing map into [0, 1]")
        if np.any(n < 1) or np.any(n != np.round(n)):
            raise EstimationError("stored calibrator is malformed: step counts must be positive integers")
        return cal


def fit_calibrator(y: Any, scores: Any, *, min_rows: int = MIN_FIT_ROWS,
                   min_class_rows: int = MIN_CLASS_ROWS) -> Calibrator:
    """Isotonic calibration of a binary classifier's scores on its holdout (labels 0/1)."""
    from sklearn.isotonic import IsotonicRegression

    s = _scores(scores, "calibration holdout", probability=True)
    yy = _labels(y, len(s), "calibration holdout")
    if not np.isin(yy, (0.0, 1.0)).all():
        raise EstimationError("calibration holdout: labels must be 0/1")
    if len(s) < min_rows:
        raise EstimationError(f"calibration holdout has {len(s)} rows; at least {min_rows} are needed to calibrate "
                              "(lengthen training.holdout_days)")
    pos = int(yy.sum())
    if pos == 0 or pos == len(yy):
        raise EstimationError(f"calibration holdout has a single class ({len(yy)} rows, all {int(yy[0])}): "
                              "scores cannot be calibrated")
    if min(pos, len(yy) - pos) < min_class_rows:
        raise EstimationError(f"calibration holdout has {pos} positive and {len(yy) - pos} negative rows; at least "
                              f"{min_class_rows} of each are needed (lengthen training.holdout_days)")
    if np.ptp(s) == 0:
        raise EstimationError(f"calibration holdout: the model gave all {len(s)} rows the same score ({s[0]:.4g}); "
                              "a constant score carries no confidence to estimate from")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(s, yy)
    x_t, y_t = np.asarray(iso.X_thresholds_, "float64"), np.asarray(iso.y_thresholds_, "float64")
    p = np.interp(s, x_t, y_t)
    # rows per constant step: every holdout row sits on a step (thresholds are each step's first and
    # last score), so its calibrated value is exactly its step's
    new = np.r_[True, y_t[1:] != y_t[:-1]]
    step = np.cumsum(new) - 1
    first_x = x_t[new]
    rows = np.bincount(np.searchsorted(first_x, s, side="right") - 1, minlength=len(first_x))
    if rows.sum() != len(s) or np.any(rows < 1):
        raise EstimationError("calibration: could not assign the holdout rows to the isotonic steps")
    return Calibrator(tuple(map(float, x_t)), tuple(map(float, y_t)), tuple(int(v) for v in rows[step]), len(s), pos,
                      float(np.mean((s - yy) ** 2)), float(np.mean((p - yy) ** 2)), _reliability(s, p, yy))


def _reliability(s: np.ndarray, p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[dict[str, float], ...]:
    order = np.argsort(s, kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, len(s))):
        if len(idx):
            out.append({"score": round(float(s[idx].mean()), 6), "observed": round(float(y[idx].mean()), 6),
                        "calibrated": round(float(p[idx].mean()), 6), "rows": float(len(idx))})
    return tuple(out)


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


# ---------------------------------------------------------------------------------------------
# DLE (regression)
# ---------------------------------------------------------------------------------------------

def model_inputs(model: Any, features: Any) -> np.ndarray:
    """What the loss models see of a row: the fitted pipeline's own preprocessed inputs (imputed,
    encoded), i.e. everything but its last step; the features themselves for a bare estimator."""
    steps = getattr(model, "steps", None)
    X = model[:-1].transform(features) if steps and len(steps) > 1 else features
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype="float64")
    return X.reshape(len(X), -1)


def _loss_model(seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    # poisson: a log link keeps every predicted loss positive and fits skewed, non-negative targets
    return HistGradientBoostingRegressor(loss="poisson", max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                         min_samples_leaf=40, l2_regularization=1.0, early_stopping=True,
                                         validation_fraction=0.2, n_iter_no_change=10, random_state=seed)


def _ape(err: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(err) / np.maximum(np.abs(y), _EPS)


@dataclass
class LossEstimator:
    """DLE: models of the per-row loss (``"sq"`` always, ``"abs"``/``"ape"`` for mae/mape) from the
    model's inputs plus its prediction, and the holdout's standardised residuals for the band."""

    models: dict[str, Any]
    residuals: np.ndarray  # cross-fitted (y - pred) / sqrt(predicted squared error) on the holdout
    n_rows: int
    n_inputs: int
    #: (2, n_inputs + 1): the holdout's min and max of every input and of the prediction
    support: np.ndarray = field(default_factory=lambda: np.empty((2, 0)))

    def outside(self, inputs: np.ndarray) -> float:
        """Share of rows with an input (or the prediction) beyond the holdout's range."""
        if self.support.shape[1] != inputs.shape[1]:
            return float("nan")
        lo, hi = self.support
        with np.errstate(invalid="ignore"):
            return float(np.mean(np.any((inputs < lo) | (inputs > hi), axis=1)))

    def to_skops(self) -> ModelArtifact:
        """The estimator as a model artifact: skops bytes, sha256, library versions."""
        return dump_model({"format": LOSS_ESTIMATOR_FORMAT, "models": dict(self.models),
                           "residuals": np.asarray(self.residuals, "float64"), "n_rows": int(self.n_rows),
                           "n_inputs": int(self.n_inputs), "support": np.asarray(self.support, "float64")})

    @classmethod
    def from_skops(cls, data: bytes, sha256: str, versions: dict[str, str] | None = None) -> LossEstimator:
        """Load through the artifact checks (checksum, library versions, trusted types only)."""
        d = load_model(data, sha256, versions)
        if not isinstance(d, dict) or d.get("format") != LOSS_ESTIMATOR_FORMAT:
            raise EstimationError(f"stored loss estimator has an unknown format (expected {LOSS_ESTIMATOR_FORMAT!r})")
        models = d.get("models")
        if not isinstance(models, dict) or "sq" not in models:
            raise EstimationError("stored loss estimator has no squared-error model")
        try:
            return cls(dict(models), np.asarray(d["residuals"], "float64"), int(d["n_rows"]), int(d["n_inputs"]),
                       np.asarray(d["support"], "float64").reshape(2, -1))
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimationError(f"stored loss estimator is malformed: {type(exc).__name__}: {exc}") from None


def fit_loss_estimator(X: Any, y: Any, pred: Any, metrics: Sequence[str] = ("rmse", "mae"), *, seed: int = 42,
                       min_rows: int = MIN_FIT_ROWS, max_residuals: int = 5000) -> LossEstimator:
    """Train the loss models on a regressor's holdout: ``X`` its inputs (:func:`model_inputs`),
    ``y`` the labels, ``pred`` its predictions. The standardised residuals kept for the band are
    cross-fitted (2 folds), so a row's error is scaled by a model that did not see it."""
    wanted = _metrics(metrics, REGRESSION_METRICS, "a regressor")
    f = _scores(pred, "loss-estimator holdout predictions", probability=False)
    yy = _labels(y, len(f), "loss-estimator holdout")
    Xa = np.asarray(X, dtype="float64").reshape(len(f), -1) if len(f) else np.empty((0, 0))
    if len(f) < min_rows:
        raise EstimationError(f"loss-estimator holdout has {len(f)} rows; at least {min_rows} are needed "
                              "(lengthen training.holdout_days)")
    err = yy - f
    if not np.any(err != 0):
        raise EstimationError("loss-estimator holdout: the model has no error on any row; there is no loss to learn")
    inputs = np.column_stack([Xa, f])
    targets = {"sq": err ** 2}
    if "mae" in wanted:
        targets["abs"] = np.abs(err)
    if "mape" in wanted:
        targets["ape"] = _ape(err, yy)
    models = {k: _loss_model(seed).fit(inputs, t) for k, t in targets.items()}
    # cross-fitted scale for the residuals the band resamples
    rng = np.random.default_rng(seed)
    fold = rng.random(len(f)) < 0.5
    scale = np.empty(len(f))
    for k in (True, False):
        m = _loss_model(seed).fit(inputs[fold != k], targets["sq"][fold != k])
        scale[fold == k] = np.sqrt(np.maximum(m.predict(inputs[fold == k]), 1e-300))
    z = err / scale
    if len(z) > max_residuals:  # a deterministic subsample keeps the artifact small
        z = z[np.sort(rng.choice(len(z), max_residuals, replace=False))]
    support = np.vstack([np.nanmin(inputs, axis=0), np.nanmax(inputs, axis=0)])
    return LossEstimator(models, z, len(f), Xa.shape[1], support)


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
