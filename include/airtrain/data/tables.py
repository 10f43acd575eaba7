"""The data package's tables: the raw batches as received, the validated features, the quarantine,
the labels (and the spec's labels source table), and the records of each ingest and validation
(``monitoring.ingest_runs``, ``monitoring.validation_runs``). Applied by :mod:`airtrain.warehouse.ddl`
as the part :data:`PART`.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from airtrain.spec import FeatureSpec, PipelineSpec
from airtrain.warehouse.connection import ident
from airtrain.warehouse.ddl import (
    DOC,
    SPEC_TYPES,
    WIDENINGS,
    SchemaPart,
    SchemaPlan,
    SchemaReport,
    add_missing_columns,
    cols,
    column_types,
    comment,
)

SQL_TYPES = {"int": "bigint", "float": "double precision", "category": "text", "bool": "boolean"}


def feature_sql_type(feature: FeatureSpec) -> str:
    """The column type of a feature in the features table (as information_schema spells it)."""
    return SQL_TYPES[feature.type]


def key_sql_type(spec: PipelineSpec) -> str:
    return "bigint" if spec.entity_key_type == "int" else "text"


def target_sql_type(spec: PipelineSpec) -> str:
    return "smallint" if spec.target.task == "binary_classification" else "double precision"


def table_columns(spec: PipelineSpec, kind: str) -> list[tuple[str, str]]:
    """(name, SQL type) of the data columns of a per-pipeline table kind."""
    key, date = spec.entity_key, spec.date_column
    if kind == "raw":
        return [(c, "text") for c in (key, date, *spec.feature_names, spec.target.name)]
    if kind == "features":
        return [(key, key_sql_type(spec)), (date, "date")] + [(f.name, feature_sql_type(f)) for f in spec.features]
    if kind == "labels":
        return [(key, key_sql_type(spec)), (date, "date"), (spec.target.name, target_sql_type(spec))]
    if kind == "labels_source":
        assert spec.labels is not None
        value = "text" if spec.target.positive else target_sql_type(spec)
        return [(key, f"{key_sql_type(spec)} NOT NULL"), (date, "date NOT NULL"),
                (spec.target.name, f"{value} NOT NULL"), (spec.labels.available_column, "date NOT NULL")]
    raise KeyError(kind)


def create(cur: Any, spec: PipelineSpec, report: SchemaReport) -> None:
    """Every table of the data package (idempotent, additive; the migration's transaction)."""
    mon = spec.warehouse.monitoring_schema
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, partition_date date NOT NULL, run_id text NOT NULL, "
        "source text NOT NULL, rows integer NOT NULL, columns_missing text[] NOT NULL DEFAULT '{{}}', "
        "columns_extra text[] NOT NULL DEFAULT '{{}}', source_sha256 text, ingested_at timestamptz NOT NULL "
        "DEFAULT now(), PRIMARY KEY (pipeline, partition_date))").format(ident(mon, "ingest_runs")))
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, partition_date date NOT NULL, run_id text NOT NULL, "
        "rows_total integer NOT NULL, rows_valid integer NOT NULL, rows_quarantined integer NOT NULL, "
        "blocked boolean NOT NULL, results jsonb NOT NULL DEFAULT '{{}}', report_path text, "
        "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, partition_date))").format(
        ident(mon, "validation_runs")))
    # a blocked re-run beside the validation in force (issue 27): added after the first release
    add_missing_columns(cur, mon, "validation_runs", [("blocked_attempt", "jsonb")], report)
    comment(cur, "TABLE", ident(mon, "ingest_runs"),
            "One row per ingested partition: source, row count, missing/extra columns.")
    comment(cur, "TABLE", ident(mon, "validation_runs"),
            "One row per validated partition: counts, blocked or not, expectation results.")
    _pipeline_tables(cur, spec, report)


def _pipeline_tables(cur, spec: PipelineSpec, report: SchemaReport) -> None:
    key, date = spec.entity_key, spec.date_column
    rs, rt = spec.table("raw")
    fs, ft = spec.table("features")
    ls, lt = spec.table("labels")
    qs, qt = spec.table("quarantine")
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (_partition_date date NOT NULL, _row_number integer NOT NULL, "
        "_run_id text NOT NULL, _source text NOT NULL, _ingested_at timestamptz NOT NULL DEFAULT now(), {}, "
        "_extra jsonb, PRIMARY KEY (_partition_date, _row_number))").format(
        ident(rs, rt), cols(table_columns(spec, "raw"))))
    add_missing_columns(cur, rs, rt, table_columns(spec, "raw"), report)
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ({}, _run_id text NOT NULL, _validated_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY ({}, {}))").format(ident(fs, ft), cols(table_columns(spec, "features")), ident(key), ident(date)))
    add_missing_columns(cur, fs, ft, table_columns(spec, "features"), report)
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        ident(f"{ft}_{date}_idx"[:63]), ident(fs, ft), ident(date)))
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ({}, label_available_on date NOT NULL, _loaded_at timestamptz NOT NULL "
        "DEFAULT now(), PRIMARY KEY ({}, {}))").format(ident(ls, lt), cols(table_columns(spec, "labels")),
                                                       ident(key), ident(date)))
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (_partition_date date NOT NULL, _row_number integer NOT NULL, "
        "_run_id text NOT NULL, reasons text[] NOT NULL, row_data jsonb NOT NULL, _quarantined_at timestamptz "
        "NOT NULL DEFAULT now(), PRIMARY KEY (_partition_date, _row_number))").format(ident(qs, qt)))
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (_run_id)").format(
        ident(f"{qt}_run_id_idx"[:63]), ident(qs, qt)))
    comment(cur, "TABLE", ident(rs, rt), f"{spec.name}: landed partitions exactly as received (all text), "
             "with their source and row number. Never modified by validation.")
    comment(cur, "TABLE", ident(fs, ft), f"{spec.name}: validated, typed rows (one per {key} and {date}).")
    comment(cur, "TABLE", ident(ls, lt), f"{spec.name}: labels ({spec.target.name}) with the date they became known.")
    comment(cur, "TABLE", ident(qs, qt), f"{spec.name}: rows rejected by validation, with every reason and the "
             "raw row as received.")
    if spec.labels is not None:
        _labels_source_table(cur, spec)


def _labels_source_table(cur, spec: PipelineSpec) -> None:
    """The spec's labels table (where delayed labels land), created when it does not exist yet;
    an existing table is left as it is (its owner fills it)."""
    assert spec.labels is not None
    src = spec.labels
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(src.schema_)))
    cur.execute("SELECT to_regclass(%s)", (f'"{src.schema_}"."{src.table}"',))
    if cur.fetchone()[0] is not None:
        return
    cur.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}, {}))").format(
        ident(src.schema_, src.table), cols(table_columns(spec, "labels_source")), ident(spec.entity_key),
        ident(spec.date_column)))
    comment(cur, "TABLE", ident(src.schema_, src.table),
             f"{spec.name}: labels as they become known - one row per {spec.entity_key} and {spec.date_column} "
             f"(the snapshot the label belongs to), the label {spec.target.name} and the date it became known "
             f"({src.available_column}). Training uses the rows known on its run date.")


def plan(cur: Any, spec: PipelineSpec, plan: SchemaPlan) -> None:
    """Compare the warehouse's features and labels tables with the spec (inside the caller's transaction):
    int -> float is widened, any other type change refused; a feature no longer in the spec is kept."""
    fs, ft = spec.table("features")
    have = column_types(cur, fs, ft)
    if not have:
        return  # first migration: nothing to compare with
    for f in spec.features:
        old, new = have.get(f.name), feature_sql_type(f)
        if old is None or old == new:
            continue
        if (old, new) in WIDENINGS:
            plan.widen.append((fs, ft, f.name, old, new))
            continue
        plan.refused.append(
            f"feature '{f.name}': {fs}.{ft}.{f.name} is {old} ({SPEC_TYPES.get(old, old)}) in the warehouse but the "
            f"spec says {f.type} ({new}). Only int -> float is changed in place (every stored value stays valid); "
            f"for any other type add the new one as a new feature with its own name (with 'since: <first date>'), "
            f"keep the old one with 'model_input: false' until no live version uses it, then remove it "
            f"({DOC}, 'Changing a feature's type')")
    key_old, key_new = have.get(spec.entity_key), key_sql_type(spec)
    if key_old is not None and key_old != key_new:
        plan.refused.append(
            f"entity_key '{spec.entity_key}' is {key_old} in the warehouse but entity_key_type says {key_new}: every "
            f"table of the pipeline is keyed by it (features, labels, predictions, references). Keep the type, or "
            f"start a new pipeline (a new name) with the new key ({DOC}, 'Changing the target mapping or the key')")
    ls, lt = spec.table("labels")
    label_old, label_new = column_types(cur, ls, lt).get(spec.target.name), target_sql_type(spec)
    if label_old is not None and label_old != label_new:
        if (label_old, label_new) in WIDENINGS:
            plan.widen.append((ls, lt, spec.target.name, label_old, label_new))
        else:
            plan.refused.append(
                f"target '{spec.target.name}': {ls}.{lt}.{spec.target.name} is {label_old} in the warehouse but a "
                f"{spec.target.task} target needs {label_new}; the stored labels cannot be narrowed. Start a new "
                f"pipeline (a new name) for the new task ({DOC}, 'Changing the target mapping or the key')")
    reserved = {spec.entity_key, spec.date_column, "_run_id", "_validated_at"}
    plan.removed = sorted(c for c in have if c not in reserved and c not in spec.feature_names)


def reader_tables(spec: PipelineSpec) -> list[tuple[str, str]]:
    """What the read-only reader role may read: the labels (to judge past predictions) and the per-day
    ingest and validation records - not the raw or validated feature rows, nor the quarantine."""
    mon = spec.warehouse.monitoring_schema
    return [spec.table("labels"), (mon, "ingest_runs"), (mon, "validation_runs")]


def columns(spec: PipelineSpec) -> dict[str, Any]:
    kinds = ["raw", "features", "labels", *(["labels_source"] if spec.labels is not None else [])]
    return {k: table_columns(spec, k) for k in kinds}


PART = SchemaPart("data", create=create, plan=plan, reader_tables=reader_tables, columns=columns)
