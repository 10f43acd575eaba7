"""Where one date's predictions of one model version go: the partitioned parent, the per-run stage table
it is written into and the partition it becomes (:class:`ScoringTarget`, JSON-able for XCom), and the
errors that refuse a scoring.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from airtrain.errors import PermanentError
from airtrain.serving.arms import arm_condition
from airtrain.spec import PipelineSpec, check_identifier


class ScoringError(PermanentError, RuntimeError):
    """Scoring was refused or failed; nothing was published."""


class NoModelError(ScoringError):
    """There is no model to score with (no champion yet, or no challenger)."""


@dataclass(frozen=True)
class ScoringTarget:
    """Where one (date, model version) of predictions goes."""

    schema: str
    table: str  # the partitioned parent
    stage: str  # the unattached stage table
    partition: str  # the name the stage table gets when attached
    as_of: dt.date
    version: int
    role: str = "champion"  # "shadow": publishing replaces every other version's rows of the date
    shards: int = 1  # how many shards score it (decided once, by begin, from the date's rows)
    rows: int | None = None  # the date's feature rows when begin counted them
    # a canary arm (airtrain.serving.arms): only the entities of ``arm`` under (salt, fraction) are scored
    arm: str = ""
    salt: str = ""
    fraction: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "stage": self.stage, "partition": self.partition,
                "as_of": self.as_of.isoformat(), "version": self.version, "role": self.role,
                "shards": self.shards, "rows": self.rows, "arm": self.arm, "salt": self.salt,
                "fraction": self.fraction}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoringTarget:
        return cls(d["schema"], d["table"], d["stage"], d["partition"], dt.date.fromisoformat(d["as_of"]),
                   int(d["version"]), str(d.get("role") or "champion"), int(d.get("shards") or 1),
                   None if d.get("rows") is None else int(d["rows"]), str(d.get("arm") or ""),
                   str(d.get("salt") or ""), float(d.get("fraction") or 0.0))

    def shard_table(self, shard: int) -> str:
        """The table one shard writes and indexes (not attached: readers cannot see it); :func:`publish
        <airtrain.serving.publish.publish>` attaches it to the stage as its hash sub-partition."""
        return leaf_name(self.stage, shard)

    def leaf(self, shard: int) -> str:
        """The name a shard's table gets once the date's partition is published."""
        return leaf_name(self.partition, shard)

    def arm_filter(self, key_sql: str) -> str:
        """SQL text selecting this arm's entities ('' = every entity)."""
        if not self.arm:
            return ""

        return arm_condition(key_sql, self.salt, self.fraction, self.arm)


def leaf_name(base: str, shard: int) -> str:
    """``<base>_s<shard>``, within PostgreSQL's 63 bytes with room for ``_pkey`` (a longer base is cut and
    keeps a hash of itself, so two bases never share a leaf name)."""
    name = f"{base}_s{int(shard)}"
    if len(name.encode()) + len("_pkey") <= 63:
        return name
    digest = hashlib.blake2b(base.encode(), digest_size=4).hexdigest()
    tail = f"_{digest}_s{int(shard)}"
    return base.encode()[:63 - len("_pkey") - len(tail)].decode(errors="ignore") + tail


def quoted(*parts: str) -> str:
    """Quote allow-listed identifiers for ADBC SQL text (check_identifier forbids quotes)."""
    return ".".join(f'"{check_identifier(p)}"' for p in parts)


def target_for(spec: PipelineSpec, as_of: dt.date, version: int, role: str = "champion", run_id: str = ""
               ) -> ScoringTarget:
    """Where ``version``'s predictions of ``as_of`` go. The stage table is named per run as well, so
    two runs scoring the same date at once never write into (or drop) each other's stage."""
    kind = "shadow_predictions" if role == "shadow" else "predictions"
    schema, table = spec.table(kind)
    suffix = f"p{as_of:%Y%m%d}_v{version}"
    stage_hash = hashlib.blake2b(f"{table}/{suffix}/{run_id}".encode(), digest_size=4).hexdigest()
    return ScoringTarget(schema, table, f"{table}_stage_{stage_hash}", f"{table}_{suffix}", as_of, version,
                         "shadow" if role == "shadow" else "champion")
