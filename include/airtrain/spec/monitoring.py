"""Spec section ``monitoring``: drift methods and thresholds per column, and when drift triggers a
retrain.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from airtrain.spec.names import Ident, SpecModel


class ColumnDrift(SpecModel):
    method: Literal["psi", "ks", "wasserstein", "jensenshannon", "chisquare", "kl_div"] | None = Field(None, description=(
        'psi, ks, wasserstein, jensenshannon, chisquare or kl_div.'))
    threshold: Annotated[float, Field(gt=0)] | None = Field(None, description=(
        'Threshold for that column.'))


class TriggerRule(SpecModel):
    drift_share: Annotated[float, Field(gt=0, le=1)] = Field(0.5, description=(
        'Share of drifted features that triggers.'))
    critical_features: list[Ident] = Field(default_factory=list, description=(
        'Features whose drift alone triggers.'))
    prediction_drift: bool = Field(True, description='Whether drift of the predictions triggers.')
    # in the primary metric's units; the 0.05 default suits scale-free metrics (AUC, F1, log loss, r2, mape) - for
    # one in the target's own units (rmse, mae) an unset key means no performance trigger (PipelineSpec)
    performance_drop_abs: Annotated[float, Field(gt=0)] | None = Field(0.05, description=(
        "Drop of the primary metric vs the champion's evaluation that triggers, in the metric's own units"
        ' (0.05 of roc_auc; 40 of an rmse in rentals). The drop is measured towards worse: for '
        'higher-is-better metrics the fall of the realized value below the evaluation value, for '
        'lower-is-better ones (rmse, mae, mape, log_loss, brier) the rise of the realized error above it.'
        " At most 1 for a metric bounded by 0..1. Default 0.05, except for rmse/mae (the target's own "
        'units): unset, no performance trigger - set a value that matters in those units.'))
    persistence: Annotated[int, Field(ge=1, le=30)] = Field(1, description=(
        'Consecutive drifted windows needed.'))
    cooldown_days: Annotated[int, Field(ge=0, le=365)] = Field(7, description=(
        'Days after a triggered retrain during which no other is triggered.'))


class MonitoringSpec(SpecModel):
    window_days: Annotated[int, Field(ge=1, le=365)] = Field(1, description=(
        'Days per monitoring window.'))
    min_rows: Annotated[int, Field(ge=1)] = Field(200, description=(
        "Fewer rows: 'insufficient data', never drift."))
    sample_rows: Annotated[int, Field(ge=100)] = Field(50_000, description=(
        'Larger windows are sampled deterministically to this size.'))
    default_method: Literal["psi", "ks", "wasserstein", "jensenshannon"] = Field("psi", description=(
        'Drift test for columns not listed in `columns`.'))
    default_threshold: Annotated[float, Field(gt=0)] = Field(0.2, description=(
        'Drift threshold for columns not listed in `columns`.'))
    columns: dict[Ident, ColumnDrift] = Field(default_factory=dict, description=(
        'Per-column drift method/threshold.'))
    trigger: TriggerRule = Field(TriggerRule(), description='When drift starts a retrain.')
