"""Spec section ``validation``: batch-level rules on top of the per-feature ones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from airtrain.spec.names import Fraction, Severity, SpecModel


class RowCountRule(SpecModel):
    min: Annotated[int, Field(ge=0)] = Field(1, description='Minimum rows in a batch.')
    max: Annotated[int, Field(ge=1)] | None = Field(None, description=(
        'Maximum rows in a batch (null: no maximum).'))
    on_fail: Severity = Field("block", description='`block` or `warn`.')

    @model_validator(mode="after")
    def _bounds(self) -> RowCountRule:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class FreshnessRule(SpecModel):
    max_age_days: Annotated[int, Field(ge=0)] = Field(1, description=(
        'Maximum age in days, relative to the run date.'))
    on_fail: Severity = Field("warn", description='`block` or `warn`.')


class ValidationSpec(SpecModel):
    row_count: RowCountRule = Field(RowCountRule(), description='Bounds on the batch size.')
    freshness: FreshnessRule = Field(FreshnessRule(), description=(
        'How old a partition may be when it is validated.'))
    unique_key_on_fail: Severity | Literal["quarantine"] = Field("quarantine", description=(
        'Duplicate or null keys: `quarantine` (all copies), `warn` or `block`.'))
    max_quarantine_fraction: Fraction = Field(
        default=0.2, description="block the batch when more than this share of rows is quarantined"
    )
    suites: list[str] = Field(default_factory=list, description="extra GX suite JSON files")
