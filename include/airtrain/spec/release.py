"""Spec sections ``promotion`` (the gates, human approval) and ``rollout`` (immediate or canary).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from airtrain.spec.names import SpecModel
from airtrain.spec.training import GateSpec


class PromotionSpec(SpecModel):
    gates: list[GateSpec] = Field(min_length=1, description=(
        'One entry per metric; all must pass. Besides them, the primary metric must not be worse than the'
        " champion's on the same rows, unless a gate on it sets `max_regression_abs` / "
        '`max_regression_rel` (then that is the tolerance).'))
    approval: Literal["none", "required"] = Field("none", description=(
        '`none`: a challenger that passes the gate is promoted at once. `required`: it waits for a person'
        ' at the `approve_promotion` task (Airflow human-in-the-loop: UI *Required actions*, or the REST '
        'API), with the evaluation summary in the request; approve promotes it (the approver and comment '
        'go into `registry.promotion_log`), reject or timeout keeps the champion (`registry.approvals`). '
        'The day is scored by the champion without waiting. Needs `schedule.max_active_runs` >= 2, so a '
        'pending approval never holds up the next run.'))
    approval_timeout_hours: Annotated[float, Field(gt=0, le=720)] = Field(20.0, description=(
        'With approval required: hours to wait for an answer; then the request is rejected as `timed_out`'
        ' (applied by the scheduler).'))
    approvers: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list, description=(
        'With approval required: Airflow user ids that may answer (HITL `assigned_users`); empty: anyone '
        "the auth manager lets edit the DAG (roles with PUT on the DAG's HITL details). Roles are granted"
        ' in the auth manager, not here.'))

    @model_validator(mode="after")
    def _approvers_need_approval(self) -> PromotionSpec:
        if self.approvers and self.approval != "required":
            raise ValueError("promotion.approvers is only used with promotion.approval: required (set it, or "
                             "remove approvers)")
        return self


class RolloutSpec(SpecModel):
    """How a promoted challenger reaches the entities: all at once, or as a canary first."""

    strategy: Literal["immediate", "canary"] = Field("immediate", description=(
        '`immediate`: it becomes the champion for every entity at once. `canary`: it becomes the '
        '*candidate* (`registry.rollouts`): a stable hash of the entity key puts `canary_fraction` of the'
        ' entities in its arm, the rest stay with the champion (both in predictions.<name>, column '
        '`arm`); the monitor graduates or aborts it as labels arrive.'))
    canary_fraction: Annotated[float, Field(gt=0, le=0.5)] = Field(0.1, description=(
        'Share of the entities scored by the candidate (md5 of the rollout salt and the key).'))
    min_labeled: Annotated[int, Field(ge=20)] = Field(500, description=(
        'Labeled rows each arm needs before the monitor decides (fewer: wait).'))
    max_days: Annotated[int, Field(ge=1, le=366)] = Field(14, description=(
        'Days after the canary started without a decision: it is aborted (the champion stays).'))
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = Field(0.95, description=(
        'Confidence of the bootstrap interval on the primary metric difference candidate - champion '
        '(improvement: the sign is flipped for lower-is-better metrics).'))
    margin: Annotated[float, Field(ge=0)] = Field(0.0, description=(
        "Graduate when the interval's lower bound is above -margin (0: the candidate must be better with "
        'that confidence; > 0: not worse by more than margin). Abort when its upper bound is below 0.'))
    bootstrap_samples: Annotated[int, Field(ge=100, le=20000)] = Field(1000, description=(
        'Bootstrap resamples (stratified: each arm resampled within itself).'))
    seed: Annotated[int, Field(ge=0)] = Field(0, description=(
        'Seed of the bootstrap (a decision can be recomputed exactly from the stored rows).'))
