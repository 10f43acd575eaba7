"""Spec section ``scoring``: batch predictions (shards, batches, shadow, per-prediction explanations).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from airtrain.spec.names import SpecModel


class PredictionExplainSpec(SpecModel):
    """Per-prediction explanations: the top-k feature contributions of each scored row."""

    top_k: Annotated[int, Field(ge=1, le=50)] = Field(3, description=(
        'Features per row, largest absolute contribution first (at most the number of model inputs).'))
    method: Literal["baseline_substitution"] = Field("baseline_substitution", description=(
        '`baseline_substitution`: contribution of a feature = score of the row minus the score with that '
        "feature set to its training reference (the median / most frequent value the model's own imputer "
        'learned). Costs about one extra prediction of the estimator per model input (the rows are '
        'preprocessed once; docs/BENCHMARKS.md).'))


class ScoringSpec(SpecModel):
    shadow: bool = Field(False, description=(
        "Also score the run's own challenger (when it was not promoted) into predictions.<name>_shadow; "
        'one shadow version per date (a re-run of the date replaces it).'))
    explain: PredictionExplainSpec | None = Field(None, description=(
        'Optional: per-prediction explanations. Each scored row gets the top_k raw features that moved '
        "its score most, in the prediction tables' columns `explain_features` (text[]) and "
        '`explain_contributions` (double precision[], same order). Unset: no columns, no cost. See docs/SQL.md'
        ' "Per-prediction explanations".'))
    partitions: Annotated[int, Field(ge=1, le=256)] = Field(2, description=(
        'Shards of the entity space scored in parallel (mapped tasks), when `rows_per_shard` is not set.'))
    batch_rows: Annotated[int, Field(ge=1000)] = Field(100_000, description=(
        'Rows per Arrow record batch while scoring (bounds memory).'))
    rows_per_shard: Annotated[int, Field(ge=1000)] | None = Field(None, description=(
        'Shards follow the data: each date is scored in ceil(rows / rows_per_shard) shards (counted when '
        'scoring begins; mapped at run time), at most `max_shards`. Unset: `partitions` shards.'))
    max_shards: Annotated[int, Field(ge=1, le=256)] = Field(16, description=(
        'Upper bound of the shards of one date with `rows_per_shard` (the mapped tasks of one run).'))

    def shards_for(self, rows: int) -> int:
        """How many shards score a date of ``rows`` feature rows: ``partitions`` when
        ``rows_per_shard`` is not set, else ceil(rows / rows_per_shard) within 1..``max_shards``."""
        if self.rows_per_shard is None:
            return self.partitions
        return max(1, min(self.max_shards, -(-int(rows) // self.rows_per_shard)))
