"""Spec sections ``training``, ``evaluation``, ``fairness`` and ``explain``, and the promotion gates
on metrics (their direction: :data:`LOWER_IS_BETTER`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from airtrain.spec.names import Fraction, Ident, SpecModel


class SearchSpec(SpecModel):
    method: Literal["grid", "random"] = Field("grid", description='`grid` or `random`.')
    param_grid: dict[str, list[Any]] = Field(description='Estimator parameter name → list of values.')
    cv: Annotated[int, Field(ge=2, le=20)] = Field(3, description='Number of time-series folds.')
    n_iter: Annotated[int, Field(ge=1)] = Field(10, description='Candidates for random search.')

    @model_validator(mode="after")
    def _non_empty(self) -> SearchSpec:
        if not self.param_grid or any(len(v) == 0 for v in self.param_grid.values()):
            raise ValueError("param_grid needs at least one value per parameter")
        return self


_ESTIMATOR_RE = re.compile(r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$")


class TrainingSpec(SpecModel):
    estimator: str = Field(description="dotted path of a scikit-learn estimator class")
    params: dict[str, Any] = Field(default_factory=dict, description=(
        'Constructor parameters of the estimator.'))
    window_days: Annotated[int, Field(ge=1, le=3650)] = Field(60, description=(
        'Days of labeled data used (train + holdout), ending at the newest labeled day.'))
    holdout_days: Annotated[int, Field(ge=1, le=365)] = Field(7, description=(
        'The newest days of the window, held out for evaluation (time-based split).'))
    min_rows: Annotated[int, Field(ge=10)] = Field(500, description=(
        'Fewer training rows than this fails training with a clear message.'))
    random_state: int = Field(42, description='Seed passed to the estimator and the search.')
    search: SearchSpec | None = Field(None, description=(
        'Optional hyperparameter search (time-series CV).'))
    cadence: Literal["daily", "on_trigger"] = Field("daily", description=(
        '`daily`: every scheduled retrain run trains a challenger. `on_trigger`: scheduled runs only '
        'ingest, validate and score; a challenger is trained when the monitor triggers a retrain, when a '
        'run is started with `force_train` or a `trigger_reason`, or when there is no champion yet.'))

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if not _ESTIMATOR_RE.match(self.estimator):
            raise ValueError(
                f"estimator {self.estimator!r} must be a scikit-learn class path such as "
                "'sklearn.ensemble.HistGradientBoostingClassifier'"
            )
        if self.holdout_days >= self.window_days:
            raise ValueError(
                f"holdout_days ({self.holdout_days}) must be smaller than window_days "
                f"({self.window_days}); otherwise nothing is left to train on"
            )
        return self


ClassificationMetric = Literal["roc_auc", "average_precision", "f1", "precision", "recall",
                               "accuracy", "log_loss", "brier"]


RegressionMetric = Literal["rmse", "mae", "r2", "mape"]


Metric = ClassificationMetric | RegressionMetric


LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae", "mape"})


#: metrics in the target's own units: no default is meaningful for a drop of them
TARGET_UNITS = frozenset({"rmse", "mae"})


BOUNDED_0_1 = frozenset({"roc_auc", "average_precision", "f1", "precision", "recall", "accuracy",
                         "brier"})


class EvaluationSpec(SpecModel):
    metrics: list[Metric] = Field(min_length=1, description=(
        'Classification: roc_auc, average_precision, f1, precision, recall, accuracy, log_loss, brier. '
        'Regression: rmse, mae, r2, mape.'))
    primary_metric: Metric = Field(description='The metric used by the search; one of metrics.')
    slices: list[Ident] = Field(default_factory=list, description=(
        'Feature columns whose values get their own metrics.'))
    threshold: Fraction = Field(default=0.5, description="probability cut-off for a positive label")

    @model_validator(mode="after")
    def _primary_listed(self) -> EvaluationSpec:
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary_metric {self.primary_metric!r} must be one of metrics")
        return self


class GateSpec(SpecModel):
    """TFX-style gate on one metric (direction taken from the metric)."""

    metric: Metric = Field(description=(
        'A metric from evaluation.metrics (direction known: log_loss/brier/rmse/mae/mape lower is '
        'better).'))
    threshold: float | None = Field(
        default=None, description="value bound: minimum (higher-better) or maximum (lower-better)"
    )
    max_regression_abs: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="largest allowed absolute change for the worse vs the champion"
    )
    max_regression_rel: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="largest allowed relative change for the worse vs the champion"
    )

    @model_validator(mode="after")
    def _possible(self) -> GateSpec:
        if self.threshold is None and self.max_regression_abs is None and self.max_regression_rel is None:
            raise ValueError("a gate needs threshold, max_regression_abs or max_regression_rel")
        if self.threshold is not None and self.metric in BOUNDED_0_1 and not 0 <= self.threshold <= 1:
            raise ValueError(
                f"{self.metric} lies between 0 and 1, so threshold {self.threshold} can never "
                "be met; use a value in [0, 1]"
            )
        return self


FairnessMetric = Literal["equalized_odds_difference", "demographic_parity_difference"]


class FairnessGateSpec(SpecModel):
    """A promotion gate on a disparity measure (lower is better: 0 means equal across groups)."""

    metric: FairnessMetric = Field(description=(
        '`equalized_odds_difference` (max of the TPR and FPR gaps between groups) or '
        '`demographic_parity_difference` (selection-rate gap).'))
    attribute: Ident | None = Field(None, description=(
        'The sensitive attribute it applies to (default: every one in `sensitive`).'))
    threshold: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description=(
        'Largest disparity allowed for the challenger (0..1).'))
    max_regression_abs: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description=(
        'Largest increase of the disparity vs the champion, measured on the same rows.'))

    @model_validator(mode="after")
    def _possible(self) -> FairnessGateSpec:
        if self.threshold is None and self.max_regression_abs is None:
            raise ValueError("a fairness gate needs threshold (largest allowed disparity) or max_regression_abs "
                             "(largest allowed increase vs the champion)")
        return self


class FairnessMonitorSpec(SpecModel):
    """A monitor alert on a disparity of the champion's published predictions on realized labels."""

    metric: FairnessMetric = Field(description=(
        '`equalized_odds_difference` or `demographic_parity_difference`.'))
    threshold: Annotated[float, Field(description=(
        'Alert when the realized disparity is above this (0..1).'), ge=0, le=1)]
    attribute: Ident | None = Field(None, description=(
        'The sensitive attribute it watches (default: every one in `sensitive`).'))


class FairnessSpec(SpecModel):
    """Group metrics per sensitive attribute at evaluation (fairlearn), and gates on them."""

    sensitive: list[Ident] = Field(min_length=1, description=(
        'Columns of `features` (model inputs or `model_input: false`) whose groups are compared.'))
    min_group_rows: Annotated[int, Field(ge=1)] = Field(30, description=(
        'Groups with fewer holdout rows (or no positive or no negative label) get their metrics stored '
        'but are left out of the disparity measures.'))
    gates: list[FairnessGateSpec] = Field(default_factory=list, description=(
        'Promotion gates on disparities: all must pass (force_promote with a reason overrides, like the '
        'metric gates).'))
    monitor: list[FairnessMonitorSpec] = Field(default_factory=list, description=(
        "Monitor alerts on realized labels: each window, the champion's published predictions of the "
        'newest `monitoring.window_days` labeled days are joined with their labels and the disparity is '
        'measured per attribute (fairlearn, as at evaluation) and stored in monitoring.fairness_metrics; '
        'above the threshold the monitor alerts (once per window). Fewer than `min_group_rows` labeled '
        'rows (or one label only) in all but one group: `not_evaluated`, never "ok".'))


class ExplainSpec(SpecModel):
    """Global feature importance per model version at evaluation (permutation importance)."""

    importance: bool = Field(True, description=(
        'Compute permutation importance (scikit-learn, on the whole Pipeline: raw spec features) for '
        'challenger and champion on the same holdout rows at evaluation.'))
    importance_rows: Annotated[int, Field(ge=50, le=1_000_000)] = Field(500, description=(
        'Holdout rows used (a seeded sample when the holdout is larger).'))
    importance_repeats: Annotated[int, Field(ge=1, le=50)] = Field(3, description=(
        'Shuffles per feature (n_repeats); mean and std are stored.'))
