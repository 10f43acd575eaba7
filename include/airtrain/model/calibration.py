"""What a version's evaluation learns for estimating its performance before labels: the isotonic
calibrator of a binary classifier's scores (small JSON, no pickle) and the direct-loss-estimation
models of a regressor's per-row loss (a skops artifact), both fitted on the version's holdout when it
is evaluated and stored with it (``registry.versions``). Applying them to a monitor window is
:mod:`airtrain.monitoring.estimation`; the method and its assumptions are described there.

Pure (NumPy; scikit-learn and skops imported inside the functions that need them): no warehouse.
Refusals raise :class:`EstimationError` (permanent: the same inputs cannot succeed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airtrain.errors import PermanentError
from airtrain.model.artifacts import ModelArtifact, dump_model, load_model
from airtrain.model.evaluation import predict_scores
from airtrain.model.training import features_frame
from airtrain.spec import PipelineSpec

CLASSIFICATION_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall", "accuracy", "log_loss",
                          "brier")
REGRESSION_METRICS = ("rmse", "mae", "mape", "r2")
#: the holdout a calibrator / loss estimator is fitted on needs at least this many rows ...
MIN_FIT_ROWS = 200
#: ... and, for a calibrator, at least this many rows of each class
MIN_CLASS_ROWS = 20
CALIBRATOR_FORMAT = "airtrain.calibrator.isotonic/1"
LOSS_ESTIMATOR_FORMAT = "airtrain.loss_estimator.dle/1"
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


# ---------------------------------------------------------------------------------------------
# at evaluation time: what the version stores for the monitor
# ---------------------------------------------------------------------------------------------

@dataclass
class FittedEstimator:
    """What :func:`fit_for_version` learned on a version's holdout: the calibrator (binary) or the loss
    estimator (regression), or why none could be fitted (``error``; the monitor then estimates nothing
    for the version and says so)."""

    kind: str  # "calibrator" | "loss_estimator"
    n_rows: int
    calibrator: Calibrator | None = None
    loss_estimator: LossEstimator | None = None
    error: str | None = None


def fit_for_version(model: Any, holdout: Any, spec: PipelineSpec) -> FittedEstimator:
    """Fit a version's performance estimator on its holdout (``holdout``: the labeled rows the
    evaluation scored): isotonic calibration of a binary classifier's scores; DLE loss models for a
    regressor (the spec's regression metrics). A holdout too small or too uniform to fit on is not an
    error of the evaluation: the result carries the reason instead."""
    y = holdout[spec.target.name].to_numpy()
    scores = predict_scores(model, holdout, spec)
    if spec.target.task == "binary_classification":
        try:
            return FittedEstimator("calibrator", len(y), calibrator=fit_calibrator(y, scores))
        except EstimationError as exc:
            return FittedEstimator("calibrator", len(y), error=str(exc))
    metrics = [m for m in spec.evaluation.metrics if m in REGRESSION_METRICS] or ["rmse"]
    try:
        X = model_inputs(model, features_frame(holdout, spec))
        return FittedEstimator("loss_estimator", len(y), loss_estimator=fit_loss_estimator(X, y, scores, metrics))
    except EstimationError as exc:
        return FittedEstimator("loss_estimator", len(y), error=str(exc))
