"""The warehouse schema of a pipeline: the ONE place that lists which packages own tables
(:data:`PARTS`, in the order they are created) and hands them to the DDL mechanism
(:mod:`airtrain.warehouse.ddl`). ``airtrain migrate`` applies it at deploy time; the daily ``prepare``
task verifies it (or, with ``AIRTRAIN_AUTO_MIGRATE=1``, applies it).
"""

from __future__ import annotations

import os
from typing import Any

from airtrain.data import tables as data_tables
from airtrain.monitoring import tables as monitoring_tables
from airtrain.registry import tables as registry_tables
from airtrain.serving import tables as serving_tables
from airtrain.spec import PipelineSpec
from airtrain.warehouse import ddl
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.ddl import SchemaBehindError, SchemaPlan, SchemaReport, SpecChangeError

#: every package that owns tables, in the order their plans and DDL run: the data tables' type changes and
#: removed features are planned first, so that the registry can refuse removing a feature a live version
#: needs and the monitoring part can widen the reference like the features table; the reader role is
#: granted after all of them
PARTS = (data_tables.PART, registry_tables.PART, serving_tables.PART, monitoring_tables.PART)

__all__ = ["PARTS", "SchemaBehindError", "SchemaPlan", "SchemaReport", "SpecChangeError", "apply_schema",
           "auto_migrate_enabled", "pending", "prepare", "schema_fingerprint", "verify_schema"]


def apply_schema(wh: Warehouse, spec: PipelineSpec) -> SchemaReport:
    """Create or extend every table the pipeline needs (:func:`airtrain.warehouse.ddl.apply_schema`)."""
    return ddl.apply_schema(wh, spec, PARTS)


def verify_schema(wh: Warehouse, spec: PipelineSpec) -> dict[str, str]:
    """Check that ``airtrain migrate`` applied this spec's schema (:func:`airtrain.warehouse.ddl.verify_schema`)."""
    return ddl.verify_schema(wh, spec, PARTS)


def schema_fingerprint(spec: PipelineSpec) -> str:
    return ddl.schema_fingerprint(spec, PARTS)


def pending(wh: Warehouse, spec: PipelineSpec) -> SchemaPlan:
    """What the next ``airtrain migrate`` changes in the existing tables, and what it refuses."""
    return ddl.pending(wh, spec, PARTS)


def auto_migrate_enabled() -> bool:
    """``AIRTRAIN_AUTO_MIGRATE=1``: the daily ``prepare`` applies the schema itself instead of only
    verifying it (tests and throw-away warehouses; production migrates at deploy time)."""
    return os.environ.get("AIRTRAIN_AUTO_MIGRATE", "").strip().lower() in ("1", "true", "yes")


def prepare(wh: Warehouse, spec: PipelineSpec, *, auto_migrate: bool | None = None) -> dict[str, Any]:
    """Verify the warehouse schema was migrated for this spec (no DDL: that is deploy time, see
    :mod:`airtrain.migrate`); with ``auto_migrate`` (default: ``$AIRTRAIN_AUTO_MIGRATE``) apply it
    instead (tests, throw-away warehouses)."""
    if not (auto_migrate_enabled() if auto_migrate is None else auto_migrate):
        return verify_schema(wh, spec)
    report = apply_schema(wh, spec)
    return {"schema": "applied", "report": str(report)[:500]}
