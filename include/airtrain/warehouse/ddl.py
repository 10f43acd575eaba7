"""The DDL mechanism: every package owns its tables and says how to create them (a :class:`SchemaPart`);
this module applies the parts of a spec - idempotent, additive, in one locked transaction - and
records the schema's fingerprint.

:func:`apply_schema` plans the type changes first (each part's ``plan``: widen int -> float, refuse
what would break the pipeline - :class:`SpecChangeError`, before any DDL), creates the spec's schemas
and ``registry.schema_migrations``, runs each part's ``create`` (tables, indexes, views, comments),
grants the read-only reader role what the parts name (:mod:`airtrain.warehouse.roles`) and records
the fingerprint (:func:`schema_fingerprint`: the spec keys that reach the DDL and the source of every
part's DDL module) with who applied it and the airtrain version. Two concurrent applies serialise on
an advisory lock.

Schema changes belong to deploy time: ``airtrain migrate`` applies them, run by ``make run`` and by
compose's ``airflow-init``, as a login that may create roles. The daily ``prepare`` task only calls
:func:`verify_schema` (a read of one row, no DDL, no lock other readers wait for), which fails with
the command to run when the warehouse is behind the spec. Which parts make up the schema is decided
by the composing layer (:mod:`airtrain.steps.schema`), never here: this module imports no package
above it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from airtrain import __version__
from airtrain.errors import PermanentError
from airtrain.spec import PipelineSpec, spec_hash
from airtrain.warehouse import roles
from airtrain.warehouse.connection import Warehouse, ident, xact_lock

#: the command that brings a warehouse up to date (named in every "schema behind" error)
MIGRATE_COMMAND = "airtrain migrate   (WAREHOUSE_URL=<warehouse URL>; or: python -m airtrain.migrate)"


@dataclass
class SchemaReport:
    pipeline: str
    spec_sha256: str
    created: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)
    columns_widened: list[str] = field(default_factory=list)
    columns_kept: list[str] = field(default_factory=list)  # features removed from the spec (never dropped)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        added = f", columns added: {self.columns_added}" if self.columns_added else ""
        added += f", columns widened: {self.columns_widened}" if self.columns_widened else ""
        added += (f", columns no longer in the spec (kept, NULL for new dates): {self.columns_kept}"
                  if self.columns_kept else "")
        warned = "".join(f"\n  warning: {w}" for w in self.warnings)
        return f"{self.pipeline}: schema up to date (spec {self.spec_sha256[:12]}){added}{warned}"


DOC = "docs/CHANGING_A_SPEC.md"


#: (type in the warehouse, type the spec asks for) changed in place by ``airtrain migrate``
WIDENINGS = frozenset({("bigint", "double precision"), ("smallint", "double precision")})


#: the spec type of each column type (for messages)
SPEC_TYPES = {"bigint": "int", "double precision": "float", "text": "category", "boolean": "bool"}


class SpecChangeError(PermanentError, RuntimeError):
    """A spec change that would break the running pipeline; nothing was changed."""


@dataclass
class SchemaPlan:
    """What bringing the warehouse to the spec changes, and what it refuses."""

    widen: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # schema, table, column, old, new
    refused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # feature columns the spec no longer lists (kept)

    def describe(self) -> list[str]:
        return ([f"widen {s}.{t}.{c} {old} -> {new}" for s, t, c, old, new in self.widen]
                + [f"keep {c} (no longer in the spec; the column stays, NULL for new dates)" for c in self.removed])


def column_types(cur: Any, schema: str, table: str) -> dict[str, str]:
    cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s", (schema, table))
    return dict(cur.fetchall())


def table_exists(cur: Any, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',))
    return cur.fetchone()[0] is not None


def refuse(spec: PipelineSpec, plan: SchemaPlan) -> None:
    """Raise :class:`SpecChangeError` naming every refused change (the caller's transaction rolls back)."""
    if plan.refused:
        raise SpecChangeError(f"{spec.name}: the spec change was refused, nothing was changed:\n  - "
                              + "\n  - ".join(plan.refused))


def apply_widenings(cur: Any, plan: SchemaPlan) -> list[str]:
    """ALTER COLUMN … TYPE for the planned widenings (caller's transaction); returns what changed."""
    done = []
    for schema, table, col, old, new in plan.widen:
        cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(ident(schema, table), ident(col),
                                                                            sql.SQL(new)))
        done.append(f"{schema}.{table}.{col} {old} -> {new}")
    return done


@dataclass(frozen=True)
class SchemaPart:
    """One package's share of the warehouse schema (its tables live next to the code that writes them).

    ``create(cur, spec, report)``: the package's DDL, inside the migration's transaction (idempotent,
    additive). ``plan(cur, spec, plan)``: before any DDL, add the type changes of its tables to
    ``plan`` (``plan.widen``) and refuse what would break them (``plan.refused``). ``reader_tables``:
    the ``(schema, table)`` the read-only reader role may SELECT; ``reader_schemas``: schemas whose
    every table it may read. ``columns``: the spec-derived columns of its tables (part of the
    fingerprint). The source of the module defining ``create`` is part of the fingerprint too: a
    change to it is a schema change."""

    name: str
    create: Callable[[Any, PipelineSpec, SchemaReport], None]
    plan: Callable[[Any, PipelineSpec, SchemaPlan], None] | None = None
    reader_tables: Callable[[PipelineSpec], list[tuple[str, str]]] = lambda spec: []
    reader_schemas: Callable[[PipelineSpec], list[str]] = lambda spec: []
    columns: Callable[[PipelineSpec], dict[str, Any]] = lambda spec: {}


class SchemaBehindError(PermanentError, RuntimeError):
    """The warehouse schema is older than the spec/code: run the deploy-time migration first."""


def cols(columns: list[tuple[str, str]]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{} {}").format(ident(n), sql.SQL(t)) for n, t in columns)


def add_missing_columns(cur, schema: str, table: str, columns: list[tuple[str, str]], report: SchemaReport) -> None:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table))
    have = {r[0] for r in cur.fetchall()}
    for name, typ in columns:
        if name not in have:
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                ident(schema, table), ident(name), sql.SQL(typ)))
            report.columns_added.append(f"{schema}.{table}.{name}")


def comment(cur, what: str, target: sql.Composable, text: str) -> None:
    cur.execute(sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(what), target, sql.Literal(text)))


def plan_schema(cur: Any, spec: PipelineSpec, parts: Sequence[SchemaPart]) -> SchemaPlan:
    """What migrating ``spec`` changes in the existing tables and what it refuses (each part's
    ``plan``, in order, inside the caller's transaction)."""
    plan = SchemaPlan()
    for part in parts:
        if part.plan is not None:
            part.plan(cur, spec, plan)
    return plan


def pending(wh: Warehouse, spec: PipelineSpec, parts: Sequence[SchemaPart]) -> SchemaPlan:
    """The plan of the next ``airtrain migrate`` (read only; for ``prepare``'s message)."""
    with wh.connect() as conn, conn.cursor() as cur:
        return plan_schema(cur, spec, parts)


def _ddl_sources(parts: Sequence[SchemaPart]) -> str:
    """The source of the modules that generate the DDL: a change to them is a schema change."""
    modules = dict.fromkeys([__name__, roles.__name__, *(p.create.__module__ for p in parts)])
    try:
        return "".join(inspect.getsource(sys.modules[m]) for m in modules)
    except OSError:  # no source files (a compiled-only install): the package version stands in for them
        return f"airtrain {__version__}"


def schema_fingerprint(spec: PipelineSpec, parts: Sequence[SchemaPart]) -> str:
    """sha256 of what the schema of ``spec`` depends on: the DDL-generating code and the spec keys
    that reach the DDL (schemas, table names, key/date/feature/target columns and types, the labels
    table, the reader role). A change of model parameters, metrics or schedules does not change it,
    so it does not call for a migration."""
    columns: dict[str, Any] = {}
    for part in parts:
        columns.update(part.columns(spec))
    relevant = {
        "name": spec.name,
        "warehouse": {k: v for k, v in spec.warehouse.model_dump(mode="json").items() if k != "conn_id"},
        "tables": {k: spec.table(k) for k in ("raw", "features", "quarantine", "labels", "predictions",
                                              "predictions_latest", "shadow_predictions", "reference")},
        "columns": columns,
        "labels": spec.labels.model_dump(mode="json", by_alias=True) if spec.labels is not None else None,
        "entity_key": spec.entity_key, "date_column": spec.date_column, "target": spec.target.name,
    }
    blob = json.dumps(relevant, sort_keys=True, default=str) + _ddl_sources(parts)
    return hashlib.sha256(blob.encode()).hexdigest()


def _migrations_table(cur: Any, spec: PipelineSpec, report: SchemaReport) -> None:
    reg = spec.warehouse.registry_schema
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, spec_sha256 text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now(), schema_sha256 text, applied_by text, airtrain_version text, "
        "PRIMARY KEY (pipeline, spec_sha256))").format(ident(reg, "schema_migrations")))
    add_missing_columns(cur, reg, "schema_migrations", [
        ("schema_sha256", "text"), ("applied_by", "text"), ("airtrain_version", "text")], report)
    comment(cur, "TABLE", ident(reg, "schema_migrations"),
            "Schema versions applied to this warehouse (by `airtrain migrate`): the pipeline, its spec's sha256, "
            "the schema fingerprint the daily run checks (schema_sha256), who applied it, when, with which airtrain "
            "version.")


def apply_schema(wh: Warehouse, spec: PipelineSpec, parts: Sequence[SchemaPart]) -> SchemaReport:
    """Create or extend everything the pipeline needs (every part). Idempotent; one transaction; locked."""
    report = SchemaReport(spec.name, spec_hash(spec))
    w = spec.warehouse
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "schema")  # one lock for all pipelines: shared tables and roles are global
        # type changes and removed features: widen int -> float, refuse the rest before any DDL
        plan = plan_schema(cur, spec, parts)
        refuse(spec, plan)
        report.columns_widened = apply_widenings(cur, plan)
        report.columns_kept = plan.removed
        for schema in dict.fromkeys([w.raw_schema, w.features_schema, w.quarantine_schema, w.registry_schema,
                                     w.predictions_schema, w.monitoring_schema]):
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
        _migrations_table(cur, spec, report)
        for part in parts:
            part.create(cur, spec, report)
        report.warnings += roles.grant_reader(cur, spec.warehouse.reader_role,
                                              [s for p in parts for s in p.reader_schemas(spec)],
                                              [t for p in parts for t in p.reader_tables(spec)])
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, spec_sha256, schema_sha256, applied_by, airtrain_version) "
            "VALUES (%s, %s, %s, current_user, %s) ON CONFLICT (pipeline, spec_sha256) DO UPDATE SET "
            "schema_sha256 = EXCLUDED.schema_sha256, applied_by = EXCLUDED.applied_by, "
            "airtrain_version = EXCLUDED.airtrain_version, applied_at = now()").format(
            ident(w.registry_schema, "schema_migrations")),
            (spec.name, report.spec_sha256, schema_fingerprint(spec, parts), __version__))
    return report


def verify_schema(wh: Warehouse, spec: PipelineSpec, parts: Sequence[SchemaPart]) -> dict[str, str]:
    """Check that ``airtrain migrate`` applied this spec's schema (the daily run's ``prepare``).

    One read, no DDL and no lock anyone waits for. Raises :class:`SchemaBehindError` naming the
    command when the warehouse has no schema yet or an older one."""
    fp = schema_fingerprint(spec, parts)
    reg = spec.warehouse.registry_schema
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f'"{reg}"."schema_migrations"',))
        if cur.fetchone()[0] is None:
            raise SchemaBehindError(
                f"{spec.name}: the warehouse has no airtrain schema yet ({reg}.schema_migrations does not exist). "
                f"Schema changes are applied at deploy time: run {MIGRATE_COMMAND} as a login that may create "
                "tables and roles, then re-run this task.")
        cur.execute(sql.SQL("SELECT 1 FROM {} WHERE pipeline = %s AND schema_sha256 = %s").format(
            ident(reg, "schema_migrations")), (spec.name, fp))
        if cur.fetchone() is not None:
            return {"schema": "verified", "schema_sha256": fp}
        cur.execute(sql.SQL("SELECT applied_at, applied_by, airtrain_version FROM {} WHERE pipeline = %s "
                            "ORDER BY applied_at DESC LIMIT 1").format(ident(reg, "schema_migrations")), (spec.name,))
        last = cur.fetchone()
    when = (f"the last migration of {spec.name} was applied {last[0].isoformat(timespec='minutes')} by {last[1] or '?'} "
            f"(airtrain {last[2] or '?'})" if last else f"{spec.name} was never migrated")
    plan = pending(wh, spec, parts)
    if plan.refused:  # migrate would refuse this spec: say so, and what to change in it
        raise SchemaBehindError(
            f"{spec.name}: the spec was changed in a way airtrain migrate refuses (fingerprint {fp[:12]} not applied; "
            f"{when}); the pipeline keeps its current tables until the spec is fixed:\n  - "
            + "\n  - ".join(plan.refused))
    changes = f" Pending: {'; '.join(plan.describe())}." if plan.describe() else ""
    raise SchemaBehindError(
        f"{spec.name}: the warehouse schema is behind the spec/code (fingerprint {fp[:12]} not applied; {when}).{changes} "
        f"Schema changes are applied at deploy time: run {MIGRATE_COMMAND}, then re-run this task. "
        "(Set AIRTRAIN_AUTO_MIGRATE=1 to let the daily run apply it itself - for tests and throw-away "
        "warehouses only: it needs a login that may create roles and takes locks readers wait for.)")
