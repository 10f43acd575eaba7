"""Warehouse DDL derived from a spec: idempotent, additive, applied in one locked transaction.

``apply_schema(wh, spec)`` creates every schema, table, index, view, comment, role and grant the
pipeline needs (docs/CONTRACT.md), adds columns for features added to the spec later (it never
drops anything), and records the schema's fingerprint (:func:`schema_fingerprint`: a hash of the
DDL this code generates for the spec) in ``registry.schema_migrations`` with who applied it and the
airtrain version. Two concurrent applies serialise on an advisory lock.

Schema changes belong to deploy time: ``airtrain migrate`` (``python -m airtrain.migrate``) applies
it, run by ``make run`` and by compose's ``airflow-init``, as a login that may create roles. The
daily ``prepare`` task only calls :func:`verify_schema` (a read of one row, no DDL, no lock other
readers wait for), which fails with the command to run when the warehouse is behind the spec.
``AIRTRAIN_AUTO_MIGRATE=1`` makes ``prepare`` apply it instead (tests, a throw-away warehouse).

Command line: ``python -m airtrain.schema --url postgresql://... [--spec-dir include/pipelines]`` (the
same as ``airtrain migrate``), and ``python -m airtrain.schema create-reader-login <name> --url ...``
for an analyst's read-only login.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
from dataclasses import dataclass, field

from psycopg2 import sql

from airtrain.db import Warehouse, ident, xact_lock
from airtrain.errors import PermanentError
from airtrain.spec import FeatureSpec, PipelineSpec

#: the command that brings a warehouse up to date (named in every "schema behind" error)
MIGRATE_COMMAND = "airtrain migrate   (WAREHOUSE_URL=<warehouse URL>; or: python -m airtrain.migrate)"

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
    if kind == "predictions_explain":  # scoring.explain: only when the spec asks for explanations
        if spec.scoring.explain is None:
            return []
        return [("explain_features", "text[]"), ("explain_contributions", "double precision[]")]
    raise KeyError(kind)


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


def spec_hash(spec: PipelineSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True).encode()).hexdigest()


def _ddl_sources() -> str:
    """The source of the functions that generate the DDL: a change to them is a schema change."""
    fns = [_shared_tables, _pipeline_tables, _labels_source_table, _prediction_tables, _reader_role, harden_reader,
           table_columns, _add_missing_columns, _audit_tables, apply_schema, _release_state_tables]
    try:
        from airtrain.canary import EVALUATIONS_DDL, ROLLOUTS_DDL, ROLLOUTS_RUNNING_INDEX

        canary_ddl = ROLLOUTS_DDL + ROLLOUTS_RUNNING_INDEX + EVALUATIONS_DDL
        return APPEND_ONLY_FN + canary_ddl + json.dumps(READER_TABLES) + "".join(inspect.getsource(f) for f in fns)
    except OSError:  # no source files (a compiled-only install): the package version stands in for them
        from airtrain import __version__

        return f"airtrain {__version__}"


def schema_fingerprint(spec: PipelineSpec) -> str:
    """sha256 of what the schema of ``spec`` depends on: the DDL-generating code and the spec keys
    that reach the DDL (schemas, table names, key/date/feature/target columns and types, the labels
    table, the reader role). A change of model parameters, metrics or schedules does not change it,
    so it does not call for a migration."""
    kinds = ["raw", "features", "labels", *(["labels_source"] if spec.labels is not None else [])]
    relevant = {
        "name": spec.name,
        "warehouse": {k: v for k, v in spec.warehouse.model_dump(mode="json").items() if k != "conn_id"},
        "tables": {k: spec.table(k) for k in ("raw", "features", "quarantine", "labels", "predictions",
                                              "predictions_latest", "shadow_predictions", "reference")},
        "columns": {k: table_columns(spec, k) for k in [*kinds, "predictions_explain"]},
        "labels": spec.labels.model_dump(mode="json", by_alias=True) if spec.labels is not None else None,
        "entity_key": spec.entity_key, "date_column": spec.date_column, "target": spec.target.name,
    }
    blob = json.dumps(relevant, sort_keys=True, default=str) + _ddl_sources()
    return hashlib.sha256(blob.encode()).hexdigest()


class SchemaBehindError(PermanentError, RuntimeError):
    """The warehouse schema is older than the spec/code: run the deploy-time migration first."""


def _cols(columns: list[tuple[str, str]]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{} {}").format(ident(n), sql.SQL(t)) for n, t in columns)


def _add_missing_columns(cur, schema: str, table: str, columns: list[tuple[str, str]], report: SchemaReport) -> None:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table))
    have = {r[0] for r in cur.fetchall()}
    for name, typ in columns:
        if name not in have:
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                ident(schema, table), ident(name), sql.SQL(typ)))
            report.columns_added.append(f"{schema}.{table}.{name}")


def _comment(cur, what: str, target: sql.Composable, text: str) -> None:
    cur.execute(sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(what), target, sql.Literal(text)))


APPEND_ONLY_FN = """
CREATE OR REPLACE FUNCTION {schema}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$"""


def _shared_tables(cur, spec: PipelineSpec, report: SchemaReport) -> None:
    w = spec.warehouse
    reg, mon = w.registry_schema, w.monitoring_schema
    stmts = [
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, version integer NOT NULL CHECK (version > 0), "
         "run_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), estimator text NOT NULL, "
         "params jsonb NOT NULL DEFAULT '{{}}', metrics jsonb NOT NULL DEFAULT '{{}}', "
         "lineage jsonb NOT NULL DEFAULT '{{}}', artifact bytea NOT NULL, artifact_sha256 text NOT NULL, "
         "artifact_format text NOT NULL, PRIMARY KEY (pipeline, version))", (reg, "model_versions")),
        ("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, pipeline text NOT NULL, from_version integer, "
         "to_version integer NOT NULL, action text NOT NULL CHECK (action IN ('promote','force_promote','rollback')), "
         "actor text NOT NULL, reason text NOT NULL, metrics jsonb NOT NULL DEFAULT '{{}}', run_id text, "
         "created_at timestamptz NOT NULL DEFAULT now())", (reg, "promotion_log")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text PRIMARY KEY, version integer NOT NULL, "
         "promoted_at timestamptz NOT NULL DEFAULT now(), promotion_id bigint, "
         "FOREIGN KEY (pipeline, version) REFERENCES " + f'"{reg}"."model_versions"' + " (pipeline, version))",
         (reg, "champions")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, run_id text NOT NULL, version integer NOT NULL, "
         "role text NOT NULL CHECK (role IN ('challenger','champion')), holdout_start date, holdout_end date, "
         "metric text NOT NULL, slice_column text NOT NULL DEFAULT '', slice_value text NOT NULL DEFAULT '', "
         "value double precision, n_rows integer, created_at timestamptz NOT NULL DEFAULT now(), "
         "PRIMARY KEY (pipeline, run_id, version, metric, slice_column, slice_value))", (reg, "evaluations")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, spec_sha256 text NOT NULL, "
         "applied_at timestamptz NOT NULL DEFAULT now(), schema_sha256 text, applied_by text, airtrain_version text, "
         "PRIMARY KEY (pipeline, spec_sha256))", (reg, "schema_migrations")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, partition_date date NOT NULL, run_id text NOT NULL, "
         "source text NOT NULL, rows integer NOT NULL, columns_missing text[] NOT NULL DEFAULT '{{}}', "
         "columns_extra text[] NOT NULL DEFAULT '{{}}', source_sha256 text, ingested_at timestamptz NOT NULL "
         "DEFAULT now(), PRIMARY KEY (pipeline, partition_date))", (mon, "ingest_runs")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, partition_date date NOT NULL, run_id text NOT NULL, "
         "rows_total integer NOT NULL, rows_valid integer NOT NULL, rows_quarantined integer NOT NULL, "
         "blocked boolean NOT NULL, results jsonb NOT NULL DEFAULT '{{}}', report_path text, "
         "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, partition_date))",
         (mon, "validation_runs")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, model_version integer, window_start date, "
         "window_end date NOT NULL, run_id text, metric text NOT NULL, column_name text NOT NULL DEFAULT '', "
         "value double precision, threshold double precision, drifted boolean, created_at timestamptz NOT NULL "
         "DEFAULT now(), PRIMARY KEY (pipeline, window_end, metric, column_name))", (mon, "drift_metrics")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, window_end date NOT NULL, model_version integer, "
         "decision text NOT NULL, reason text NOT NULL, report_id text, report_path text, triggered_run_id text, "
         "created_at timestamptz NOT NULL DEFAULT now(), window_start date, run_id text, drifted boolean, "
         "drift_share double precision, current_rows integer, details jsonb NOT NULL DEFAULT '{{}}', "
         "PRIMARY KEY (pipeline, window_end))",
         (mon, "drift_decisions")),
        ("CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, window_end date NOT NULL, attribute text NOT NULL, "
         "metric text NOT NULL, model_version integer, labeled_start date, labeled_end date, run_id text, "
         "value double precision, threshold double precision NOT NULL, status text NOT NULL CHECK (status IN "
         "('ok','breach','not_evaluated')), reason text NOT NULL, n_rows integer NOT NULL, "
         "excluded_groups text[] NOT NULL DEFAULT '{{}}', groups jsonb NOT NULL DEFAULT '[]', alerted_at timestamptz, "
         "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, window_end, attribute, metric))",
         (mon, "fairness_metrics")),
    ]
    from airtrain.release import APPROVALS_DDL

    stmts.append((APPROVALS_DDL, (reg, "approvals")))  # human approval decisions (promotion.approval)
    from airtrain.canary import EVALUATIONS_DDL, ROLLOUTS_DDL, ROLLOUTS_RUNNING_INDEX

    stmts += [(ROLLOUTS_DDL, (reg, "rollouts")), (ROLLOUTS_RUNNING_INDEX, (reg, "rollouts")),  # rollout.strategy
              (EVALUATIONS_DDL, (mon, "canary_evaluations"))]
    for stmt, (schema, table) in stmts:
        cur.execute(sql.SQL(stmt).format(ident(schema, table)))
    _audit_tables(cur, reg)
    # columns added after the first release: warehouses created earlier get them here
    _add_missing_columns(cur, mon, "drift_decisions", [
        ("window_start", "date"), ("run_id", "text"), ("drifted", "boolean"), ("drift_share", "double precision"),
        ("current_rows", "integer"), ("details", "jsonb NOT NULL DEFAULT '{}'")], report)
    _add_missing_columns(cur, reg, "model_versions", [("artifact_signature", "text")], report)
    # issue 27: the spec each version was trained under; a blocked re-run beside the validation in force
    _add_missing_columns(cur, reg, "model_versions", [("spec_text", "text")], report)
    _add_missing_columns(cur, mon, "validation_runs", [("blocked_attempt", "jsonb")], report)
    # the partition date a champion change is effective for (registry.champion_as_of); rows logged before
    # it existed are read as their version's training as_of (the log is append-only: never back-filled)
    _add_missing_columns(cur, reg, "promotion_log", [("effective_on", "date")], report)
    _add_missing_columns(cur, reg, "schema_migrations", [
        ("schema_sha256", "text"), ("applied_by", "text"), ("airtrain_version", "text")], report)
    cur.execute(sql.SQL(APPEND_ONLY_FN.replace("{schema}", "{}")).format(ident(reg)))
    cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'promotion_log_append_only' AND tgrelid = %s::regclass",
                (f'"{reg}"."promotion_log"',))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE TRIGGER promotion_log_append_only BEFORE UPDATE OR DELETE ON {} "
                            "FOR EACH ROW EXECUTE FUNCTION {}.refuse_change()").format(
            ident(reg, "promotion_log"), ident(reg)))
        cur.execute(sql.SQL("CREATE TRIGGER promotion_log_no_truncate BEFORE TRUNCATE ON {} "
                            "FOR EACH STATEMENT EXECUTE FUNCTION {}.refuse_change()").format(
            ident(reg, "promotion_log"), ident(reg)))
    _release_state_tables(cur, reg, report)  # rejected versions, promotion holds, per-run gate decisions
    for schema, table, cols in [(reg, "evaluations", "pipeline, version"), (mon, "drift_metrics", "pipeline, metric"),
                                (reg, "promotion_log", "pipeline, id")]:
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            ident(f"{table}_{cols.replace(', ', '_')}_idx"), ident(schema, table), sql.SQL(cols)))
    comments = {
        (reg, "model_versions"): "Every trained model version: artifact (skops bytes + sha256), params, "
                                 "holdout metrics, gate decision and lineage (data window, data hash, versions).",
        (reg, "champions"): "The live model per pipeline: exactly one row per pipeline (primary key).",
        (reg, "promotion_log"): "Append-only history of champion changes: who/what promoted which version, "
                                "when, why, with the metrics. UPDATE/DELETE/TRUNCATE are refused.",
        (reg, "evaluations"): "Challenger and champion metrics on the same time-based holdout, overall "
                              "(slice_column = '') and per slice.",
        (reg, "schema_migrations"): "Schema versions applied to this warehouse (by `airtrain migrate`): the "
                                    "pipeline, its spec's sha256, the schema fingerprint the daily run checks "
                                    "(schema_sha256), who applied it, when, with which airtrain version.",
        (reg, "rollouts"): "Canary rollouts (rollout.strategy: canary): one row per canary - candidate and champion "
                           "version, the share of entities and the salt of their md5 assignment, running / "
                           "graduated / aborted / not_started, who decided, when and why.",
        (mon, "canary_evaluations"): "The monitor's daily canary check: labeled rows and realized primary metric per "
                                     "arm, the improvement (candidate - champion, sign flipped for lower-is-better "
                                     "metrics) with its bootstrap interval, and the decision (wait/graduate/abort).",
        (reg, "approvals"): "Human approval of promotions (promotion.approval: required): one row per run and "
                            "challenger - approved, rejected or timed_out, who answered, their comment, whether "
                            "it was promoted and why not.",
        (mon, "ingest_runs"): "One row per ingested partition: source, row count, missing/extra columns.",
        (mon, "validation_runs"): "One row per validated partition: counts, blocked or not, expectation results.",
        (mon, "drift_metrics"): "Drift and performance metrics per monitoring window (long format).",
        (mon, "drift_decisions"): "Monitor decisions per window: no_drift, drift (not yet persistent), cooldown, "
                                  "retrain, insufficient_data or no_champion, with the reason and the report.",
        (mon, "fairness_metrics"): "fairness.monitor per window: the disparity of the champion's published "
                                   "predictions on the labels known at window_end (labeled_start..labeled_end), "
                                   "per attribute and metric; status ok, breach (alerted once: alerted_at) or "
                                   "not_evaluated (too few labeled rows per group), per group in groups.",
    }
    for (schema, table), text in comments.items():
        _comment(cur, "TABLE", ident(schema, table), text)
    col_comments = {
        (reg, "champions", "version"): "Version in registry.model_versions that is live now.",
        (reg, "promotion_log", "action"): "promote (gate passed), force_promote (manual override) or rollback.",
        (reg, "promotion_log", "actor"): "Who or what made the change: airtrain:gate (the gate promoted "
                                         "automatically), airtrain:monitor (a canary graduated), user:<name> (a "
                                         "person: approval, force_promote, rollback, canary_action).",
        (reg, "promotion_log", "effective_on"): "The first partition date the change is for: the model that scores "
                                                "a date D is the to_version of the newest row (by id) with "
                                                "effective_on <= D (NULL: the version's training as_of).",
        (reg, "model_versions", "lineage"): "Training window, row counts, data hash, library and code versions.",
        (reg, "model_versions", "artifact_signature"): "hmac-sha256:<key id>:<hex> over (pipeline, version, "
                                                       "artifact_sha256), made with a key the warehouse never "
                                                       "holds; verified before every load.",
    }
    for (schema, table, col), text in col_comments.items():
        _comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(schema, table), ident(col)), text)


AUDIT_TABLES = {
    "feature_importance": (
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, run_id text NOT NULL, version integer NOT NULL, "
        "role text NOT NULL CHECK (role IN ('challenger','champion')), holdout_start date, holdout_end date, "
        "feature text NOT NULL, importance_mean double precision NOT NULL, importance_std double precision NOT NULL, "
        "n_rows integer NOT NULL, scoring text NOT NULL, n_repeats integer NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, run_id, version, feature))",
        "Permutation importance per model version and evaluation run (scikit-learn, on the raw spec features): "
        "the drop of the primary metric (scoring) when the feature is shuffled; challenger and champion on the "
        "same holdout rows."),
    "fairness": (
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, run_id text NOT NULL, version integer NOT NULL, "
        "role text NOT NULL CHECK (role IN ('challenger','champion')), holdout_start date, holdout_end date, "
        "attribute text NOT NULL, group_value text NOT NULL DEFAULT '', metric text NOT NULL, "
        "value double precision, n_rows integer, created_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (pipeline, run_id, version, attribute, group_value, metric))",
        "Fairness per sensitive attribute (fairlearn MetricFrame): per group (group_value) selection_rate, tpr, "
        "fpr, positives and the primary metric; disparities (group_value = '') demographic_parity_difference "
        "and equalized_odds_difference. Challenger and champion on the same holdout rows."),
    "model_cards": (
        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, version integer NOT NULL, card jsonb NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, version))",
        "One model card per version (JSON): data window and rows, features, estimator and params, metrics vs the "
        "champion, importance, fairness, gate decision, promotions, lineage. Rebuilt after evaluate and promote."),
}


def _release_state_tables(cur, reg: str, report: SchemaReport) -> None:
    """Issue 20 items 5, 6, 8: ``version_status`` (append-only: a rollback rejects the version rolled
    back from; a forced promotion or a rollback to it clears that), ``promotion_holds`` (append-only:
    automatic promotions held / released per pipeline), ``gate_decisions`` (one row per run and
    version: every gate decision, never overwritten by a later run) and ``promotion_log.triggered_by``.
    Runs after the append-only trigger function exists."""
    tables = {
        "version_status": (
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, pipeline text NOT NULL, version integer NOT NULL, "
            "status text NOT NULL CHECK (status IN ('rejected','cleared')), actor text NOT NULL, reason text NOT NULL, "
            "run_id text, promotion_id bigint, created_at timestamptz NOT NULL DEFAULT now())",
            "Append-only status history of model versions: 'rejected' when a rollback replaced the version as "
            "champion (who, when, why: the gate refuses it and any retrain that reproduces it), 'cleared' when a "
            "person brought it back (force_promote or rollback_version, with a reason). The newest row is current."),
        "promotion_holds": (
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, pipeline text NOT NULL, action text NOT NULL "
            "CHECK (action IN ('hold','release')), actor text NOT NULL, reason text NOT NULL, run_id text, "
            "created_at timestamptz NOT NULL DEFAULT now())",
            "Append-only holds of automatic promotions per pipeline (retrain param promotion_hold: hold / release, "
            "with a reason). While the newest row is 'hold', challengers that pass the gate are recorded as held "
            "and not promoted; force_promote and rollbacks still work."),
        "gate_decisions": (
            "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, run_id text NOT NULL, version integer NOT NULL, "
            "champion_version integer, passed boolean, refused text, outcome text, reason text NOT NULL, "
            "decision jsonb NOT NULL DEFAULT '{{}}', created_at timestamptz NOT NULL DEFAULT now(), "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, run_id, version))",
            "Every gate decision, one row per run and version (a later run that re-derives a version adds its own "
            "row): passed, refused (out_of_order, no_fair_comparison, rejected, champion_changed, held), the "
            "reason, what became of it (outcome) and the whole decision (checks, compared days) as JSON."),
    }
    for table, (ddl, text) in tables.items():
        cur.execute(sql.SQL(ddl).format(ident(reg, table)))
        _comment(cur, "TABLE", ident(reg, table), text)
    for table in ("version_status", "promotion_holds"):  # append-only, like promotion_log
        cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
                    (f"{table}_append_only", f'"{reg}"."{table}"'))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION "
                                "{}.refuse_change()").format(ident(f"{table}_append_only"), ident(reg, table),
                                                             ident(reg)))
            cur.execute(sql.SQL("CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION "
                                "{}.refuse_change()").format(ident(f"{table}_no_truncate"), ident(reg, table),
                                                             ident(reg)))
    for table, cols in (("version_status", "pipeline, version, id"), ("gate_decisions", "pipeline, version")):
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            ident(f"{table}_{cols.replace(', ', '_')}_idx"), ident(reg, table), sql.SQL(cols)))
    _add_missing_columns(cur, reg, "promotion_log", [("triggered_by", "text")], report)
    _comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(reg, "promotion_log"), ident("triggered_by")),
             "Who or what started the run that made the change: user:<name> (a person triggered it) or "
             "airflow:<run type> (scheduled, backfill, asset-triggered); NULL in rows written before it existed.")


def _audit_tables(cur, reg: str) -> None:
    """Explanations and fairness per evaluation (issue 13): created if missing, never altered."""
    for table, (ddl, comment) in AUDIT_TABLES.items():
        cur.execute(sql.SQL(ddl).format(ident(reg, table)))
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (pipeline, version)").format(
            ident(f"{table}_pipeline_version_idx"), ident(reg, table)))
        _comment(cur, "TABLE", ident(reg, table), comment)


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
        ident(rs, rt), _cols(table_columns(spec, "raw"))))
    _add_missing_columns(cur, rs, rt, table_columns(spec, "raw"), report)
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ({}, _run_id text NOT NULL, _validated_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY ({}, {}))").format(ident(fs, ft), _cols(table_columns(spec, "features")), ident(key), ident(date)))
    _add_missing_columns(cur, fs, ft, table_columns(spec, "features"), report)
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        ident(f"{ft}_{date}_idx"[:63]), ident(fs, ft), ident(date)))
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ({}, label_available_on date NOT NULL, _loaded_at timestamptz NOT NULL "
        "DEFAULT now(), PRIMARY KEY ({}, {}))").format(ident(ls, lt), _cols(table_columns(spec, "labels")),
                                                       ident(key), ident(date)))
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (_partition_date date NOT NULL, _row_number integer NOT NULL, "
        "_run_id text NOT NULL, reasons text[] NOT NULL, row_data jsonb NOT NULL, _quarantined_at timestamptz "
        "NOT NULL DEFAULT now(), PRIMARY KEY (_partition_date, _row_number))").format(ident(qs, qt)))
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (_run_id)").format(
        ident(f"{qt}_run_id_idx"[:63]), ident(qs, qt)))
    _comment(cur, "TABLE", ident(rs, rt), f"{spec.name}: landed partitions exactly as received (all text), "
             "with their source and row number. Never modified by validation.")
    _comment(cur, "TABLE", ident(fs, ft), f"{spec.name}: validated, typed rows (one per {key} and {date}).")
    _comment(cur, "TABLE", ident(ls, lt), f"{spec.name}: labels ({spec.target.name}) with the date they became known.")
    _comment(cur, "TABLE", ident(qs, qt), f"{spec.name}: rows rejected by validation, with every reason and the "
             "raw row as received.")
    if spec.labels is not None:
        _labels_source_table(cur, spec)
    _prediction_tables(cur, spec, report)
    ms, mt = spec.table("reference")
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (model_version integer NOT NULL, {}, prediction double precision, "
        "PRIMARY KEY (model_version, {}, {}))").format(
        ident(ms, mt), _cols(table_columns(spec, "features")), ident(key), ident(date)))
    _add_missing_columns(cur, ms, mt, table_columns(spec, "features"), report)
    _comment(cur, "TABLE", ident(ms, mt), f"{spec.name}: drift reference per model version - a deterministic "
             "sample of the rows it was trained and evaluated on, with its own predictions. Written once per "
             "version by the monitor.")


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
        ident(src.schema_, src.table), _cols(table_columns(spec, "labels_source")), ident(spec.entity_key),
        ident(spec.date_column)))
    _comment(cur, "TABLE", ident(src.schema_, src.table),
             f"{spec.name}: labels as they become known - one row per {spec.entity_key} and {spec.date_column} "
             f"(the snapshot the label belongs to), the label {spec.target.name} and the date it became known "
             f"({src.available_column}). Training uses the rows known on its run date.")


def _prediction_tables(cur, spec: PipelineSpec, report: SchemaReport) -> None:
    key = spec.entity_key
    ps, pt = spec.table("predictions")
    for kind, what in (("predictions", "champion"), ("shadow_predictions", "challenger (shadow)")):
        s, t = spec.table(kind)
        cur.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ({} {} NOT NULL, as_of_date date NOT NULL, model_version integer NOT NULL, "
            "score double precision NOT NULL, predicted_label smallint, run_id text NOT NULL, "
            "scored_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY ({}, as_of_date, model_version)) "
            "PARTITION BY RANGE (as_of_date, model_version)").format(
            ident(s, t), ident(key), sql.SQL(key_sql_type(spec)), ident(key)))
        # the arm of a canary (rollout.strategy: canary); a stage table inherits the default of its parent
        arm = "shadow" if kind == "shadow_predictions" else "champion"
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS arm text NOT NULL DEFAULT {}").format(
            ident(s, t), sql.Literal(arm)))
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (as_of_date)").format(
            ident(f"{t}_as_of_date_idx"), ident(s, t)))
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (model_version, as_of_date)").format(
            ident(f"{t}_model_version_idx"), ident(s, t)))
        _comment(cur, "TABLE", ident(s, t), f"{spec.name}: batch predictions of the {what} model, one row per "
                 f"{key}, as_of_date and model_version. Partitioned by (as_of_date, model_version); a re-run of "
                 "a date swaps its partition atomically.")
        for col, text in [(key, "The entity scored."), ("as_of_date", "Date of the features that were scored."),
                          ("model_version", "registry.model_versions.version that produced the score."),
                          ("score", "Probability of the positive class (classification) or the prediction."),
                          ("predicted_label", "score >= the spec's evaluation.threshold (classification)."),
                          ("run_id", "Airflow run that wrote the row."), ("scored_at", "When the row was written."),
                          ("arm", "'champion', or 'candidate' for the entities a running canary scores "
                                  "(registry.rollouts); 'shadow' in the shadow table.")]:
            _comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(s, t), ident(col)), text)
        # nullable, no default: adding them to the partitioned parent is a catalog change only
        _add_missing_columns(cur, s, t, table_columns(spec, "predictions_explain"), report)
        for col, text in [("explain_features", "scoring.explain: the top-k model inputs by |contribution| "
                           "(largest first)."),
                          ("explain_contributions", "scoring.explain: score minus the score with that feature set "
                           "to its training reference (median / most frequent), same order as explain_features.")]:
            if table_columns(spec, "predictions_explain"):
                _comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(s, t), ident(col)), text)
    ls, lt = spec.table("predictions_latest")
    # The newest published prediction per entity, whichever model version made it: a champion change
    # never empties the view (the previous champion's rows stay visible until the new one has scored),
    # and a date scored by several versions still gives one row per entity - the most recently scored.
    cur.execute(sql.SQL(
        "CREATE OR REPLACE VIEW {v} AS SELECT DISTINCT ON (p.{k}) p.{k}, p.as_of_date, p.model_version, p.score, "
        "p.predicted_label, p.run_id, p.scored_at, p.arm FROM {p} p "
        "ORDER BY p.{k}, p.as_of_date DESC, p.scored_at DESC, p.model_version DESC").format(
        v=ident(ls, lt), k=ident(key), p=ident(ps, pt)))
    _comment(cur, "VIEW", ident(ls, lt), f"{spec.name}: the newest published prediction per {key} (newest "
             "as_of_date, then the most recently scored model version). Never empty once a date was scored.")


#: what the reader role may read besides the predictions schema: the labels (to judge past
#: predictions), which model is live and why, evaluations, and the per-day validation and drift
#: results. Not: model artifacts (registry.model_versions), raw or validated feature rows, quarantined
#: rows (raw data as received) or the drift reference samples.
READER_TABLES = {
    "registry": ("champions", "promotion_log", "evaluations", "feature_importance", "fairness", "model_cards",
                 "approvals", "rollouts", "gate_decisions", "version_status", "promotion_holds"),
    "monitoring": ("ingest_runs", "validation_runs", "drift_metrics", "drift_decisions", "canary_evaluations",
                   "fairness_metrics"),
}


def reader_tables(spec: PipelineSpec) -> list[tuple[str, str]]:
    """(schema, table) the reader role gets SELECT on, outside the predictions schema."""
    w = spec.warehouse
    schemas = {"registry": w.registry_schema, "monitoring": w.monitoring_schema}
    return [spec.table("labels")] + [(schemas[k], t) for k, tables in READER_TABLES.items() for t in tables]


#: PostgreSQL functions every role may run by default that WRITE: large objects (created and owned by
#: the caller, outside any table's grants). A read-only login must not have them.
LARGE_OBJECT_WRITERS = ("lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid, bytea)", "lo_import(text)",
                        "lo_import(text, oid)", "lo_put(oid, bigint, bytea)", "lowrite(integer, bytea)",
                        "lo_truncate(integer, integer)", "lo_truncate64(integer, bigint)")


def reader_write_privileges(cur, role: str) -> list[str]:
    """What ``role`` can still write outside the tables: temporary tables in this database, large
    objects. Empty for a properly read-only role."""
    left = []
    cur.execute("SELECT has_database_privilege(%s, current_database(), 'TEMPORARY')", (role,))
    if cur.fetchone()[0]:
        left.append("TEMPORARY on the database")
    for fn in LARGE_OBJECT_WRITERS:
        cur.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, fn))
        if cur.fetchone()[0]:
            left.append(f"EXECUTE on {fn}")
    return left


def harden_reader(cur, role: str) -> list[str]:
    """Take from a read-only role what every role gets through PUBLIC and it must not have: temporary
    tables (``CREATE TEMP TABLE``) and the large-object functions that write (``lo_create`` ...).
    PostgreSQL has no per-role deny, so both are revoked from PUBLIC and TEMPORARY is granted back
    to the current login (the owner of the airtrain objects; the task login is its member). Other
    roles of this database that need temporary tables or large objects need an explicit GRANT
    (docs/SQL.md "A login for analysts"). Needs the database owner / a superuser: with less, nothing is changed and
    the returned list says what the reader can still do (``airtrain migrate`` prints it)."""
    if not reader_write_privileges(cur, role):
        return []
    cur.execute("SELECT current_database(), current_user")
    db, me = cur.fetchone()
    steps = [[sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(db), sql.Identifier(me)),
              sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db))],
             [sql.SQL("REVOKE EXECUTE ON FUNCTION pg_catalog.{} FROM PUBLIC").format(sql.SQL(fn))
              for fn in LARGE_OBJECT_WRITERS]]
    for statements in steps:  # each on its own: a database owner that is no superuser still takes TEMPORARY
        cur.execute("SAVEPOINT airtrain_harden_reader")
        try:
            for statement in statements:
                cur.execute(statement)
            cur.execute("RELEASE SAVEPOINT airtrain_harden_reader")
        except Exception:  # noqa: BLE001 - not allowed to (not the owner / a superuser): reported below
            cur.execute("ROLLBACK TO SAVEPOINT airtrain_harden_reader")
    left = reader_write_privileges(cur, role)
    return [f"the read-only role {role} can still write: {', '.join(left)}; run `airtrain migrate` once as a "
            "superuser (the database owner can revoke TEMPORARY only), or revoke it from PUBLIC yourself"] if left else []


def _reader_role(cur, spec: PipelineSpec) -> list[str]:
    role = spec.warehouse.reader_role
    ps = spec.warehouse.predictions_schema
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(role)))
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(ps), ident(role)))
    cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident(ps), ident(role)))
    cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
        ident(ps), ident(role)))
    for schema, table in reader_tables(spec):
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(role)))
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident(schema, table), ident(role)))
    return harden_reader(cur, role)  # read-only also outside the tables: no temp tables, no large objects


class ReaderLoginError(RuntimeError):
    """The reader login could not be created (bad name, role exists, no reader role yet)."""


def create_reader_login(wh: Warehouse, name: str, password: str, *, reader_role: str = "predictions_reader",
                        reset_password: bool = False) -> str:
    """Create ``name`` as a LOGIN role that inherits ``reader_role`` (read-only; see :func:`_reader_role`).

    The password is sent as a SCRAM verifier computed here, never as clear text in the SQL. An
    existing role is refused unless ``reset_password`` (then its password is replaced and it is
    (re)granted the reader role). Returns what was done.
    """
    import psycopg2.extensions

    from airtrain.spec import check_identifier

    try:
        check_identifier(name)
    except ValueError as exc:
        raise ReaderLoginError(f"login name: {exc}") from None
    if len(password) < 12:
        raise ReaderLoginError("the password must have at least 12 characters")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "schema")
        cur.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (reader_role,))
        if cur.fetchone() is None:
            raise ReaderLoginError(f"role {reader_role!r} does not exist yet: apply the schema first "
                                   "(`python -m airtrain.schema --url ...`, or any retrain run)")
        cur.execute("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = %s", (name,))
        row = cur.fetchone()
        if row is not None and row[0]:
            raise ReaderLoginError(f"{name!r} is a superuser; pick another name for a read-only login")
        if row is not None and not reset_password:
            raise ReaderLoginError(f"role {name!r} exists already; pass --reset-password to give it a new "
                                   "password (it keeps inheriting the reader role)")
        verifier = psycopg2.extensions.encrypt_password(password, name, conn, "scram-sha-256")
        if row is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN INHERIT PASSWORD {}").format(ident(name), sql.Literal(verifier)))
            done = "created"
        else:
            cur.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident(name), sql.Literal(verifier)))
            done = "password reset"
        cur.execute(sql.SQL("GRANT {} TO {}").format(ident(reader_role), ident(name)))
    return done


def setup_roles(wh: Warehouse, *, owner_role: str, task_login: str, task_password: str,
                reader_roles: list[str]) -> list[str]:
    """Deploy-time, as a superuser (compose's ``airflow-init``): the least-privilege roles of a warehouse.

    * ``owner_role`` (NOLOGIN, no attributes) owns the airtrain objects: ``airtrain migrate`` runs as it
      (``options=-c role=<owner_role>``), so do the tasks;
    * ``task_login`` - the workers' login - LOGIN without SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or
      BYPASSRLS, a member of ``owner_role`` whose every session runs as it (``ALTER ROLE ... SET role``:
      the partitions it creates belong to the owner, like the tables migrate creates); it can therefore
      write and swap the pipelines' tables and nothing else: no roles, no databases;
    * the reader roles exist (NOLOGIN) so that migrate, as the owner, only grants to them, and they are
      read-only also outside the tables (:func:`harden_reader`).

    The password is sent as a SCRAM verifier. Idempotent: a second run resets the password and
    attributes. Returns what was done."""
    import psycopg2.extensions

    from airtrain.spec import check_identifier

    for name in (owner_role, task_login, *reader_roles):
        check_identifier(name)
    if len(task_password) < 12:
        raise ReaderLoginError("the task login's password must have at least 12 characters")
    done: list[str] = []
    no_attrs = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "schema")
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:
            raise ReaderLoginError("setup-roles needs a superuser login (the warehouse's admin)")
        for role, login in ((owner_role, False), *((r, False) for r in reader_roles), (task_login, True)):
            cur.execute("SELECT rolsuper OR rolname = current_user FROM pg_roles WHERE rolname = %s", (role,))
            row = cur.fetchone()
            if row is not None and row[0]:
                raise ReaderLoginError(f"{role!r} is a superuser (or this login): pick other role names")
            verb = "ALTER" if row else "CREATE"
            cur.execute(sql.SQL("{} ROLE {} {} {} INHERIT").format(
                sql.SQL(verb), ident(role), sql.SQL("LOGIN" if login else "NOLOGIN"), no_attrs))
            done.append(f"{'altered' if row else 'created'} role {role}")
        verifier = psycopg2.extensions.encrypt_password(task_password, task_login, conn, "scram-sha-256")
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident(task_login), sql.Literal(verifier)))
        cur.execute(sql.SQL("GRANT {} TO {}").format(ident(owner_role), ident(task_login)))
        cur.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(ident(task_login), sql.Literal(owner_role)))
        cur.execute("SELECT current_database()")
        db = sql.Identifier(cur.fetchone()[0])
        cur.execute(sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(db, ident(owner_role)))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident(task_login)))
        done.append(f"{task_login}: member of {owner_role} (its sessions run as it), no role attributes")
        for role in reader_roles:
            done += harden_reader(cur, role) or [f"{role}: read-only outside the tables too"]
    return done


def _setup_roles(argv: list[str]) -> int:
    from airtrain.spec import scan_specs

    ap = argparse.ArgumentParser(prog="airtrain setup-roles", description="deploy time, as the warehouse's "
                                 "superuser: the owner role of the airtrain objects and the workers' task login "
                                 "(no CREATEROLE); the connection comes from WAREHOUSE_URL or libpq's PG* "
                                 "variables, the task password from an environment variable, never argv")
    ap.add_argument("--owner-role", default="airtrain_owner")
    ap.add_argument("--task-login", default=os.environ.get("WAREHOUSE_TASK_USER") or "airtrain_task")
    ap.add_argument("--task-password-env", default="WAREHOUSE_TASK_PASSWORD",
                    help="the environment variable holding the task login's password")
    ap.add_argument("--spec-dir", default=None)
    args = ap.parse_args(argv)
    password = os.environ.get(args.task_password_env) or ""
    if not password:
        print(f"error: set {args.task_password_env} to the task login's password", file=sys.stderr)
        return 2
    scan = scan_specs(args.spec_dir)
    readers = sorted({s.warehouse.reader_role for s in scan.specs} | {"predictions_reader"})
    try:
        for line in setup_roles(Warehouse(os.environ.get("WAREHOUSE_URL") or ""), owner_role=args.owner_role,
                                task_login=args.task_login, task_password=password, reader_roles=readers):
            print(line)
    except (ReaderLoginError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def apply_schema(wh: Warehouse, spec: PipelineSpec) -> SchemaReport:
    """Create or extend everything the pipeline needs. Idempotent; one transaction; locked."""
    report = SchemaReport(spec.name, spec_hash(spec))
    w = spec.warehouse
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "schema")  # one lock for all pipelines: shared tables and roles are global
        from airtrain import evolution

        # type changes and removed features: widen int -> float, refuse the rest before any DDL
        plan = evolution.plan_schema(cur, spec)
        evolution.refuse(spec, plan)
        report.columns_widened = evolution.apply_widenings(cur, plan)
        report.columns_kept = plan.removed
        for schema in dict.fromkeys([w.raw_schema, w.features_schema, w.quarantine_schema, w.registry_schema,
                                     w.predictions_schema, w.monitoring_schema]):
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
        _shared_tables(cur, spec, report)
        _pipeline_tables(cur, spec, report)
        report.warnings += _reader_role(cur, spec)
        from airtrain import __version__

        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, spec_sha256, schema_sha256, applied_by, airtrain_version) "
            "VALUES (%s, %s, %s, current_user, %s) ON CONFLICT (pipeline, spec_sha256) DO UPDATE SET "
            "schema_sha256 = EXCLUDED.schema_sha256, applied_by = EXCLUDED.applied_by, "
            "airtrain_version = EXCLUDED.airtrain_version, applied_at = now()").format(
            ident(w.registry_schema, "schema_migrations")),
            (spec.name, report.spec_sha256, schema_fingerprint(spec), __version__))
    return report


def verify_schema(wh: Warehouse, spec: PipelineSpec) -> dict[str, str]:
    """Check that ``airtrain migrate`` applied this spec's schema (the daily run's ``prepare``).

    One read, no DDL and no lock anyone waits for. Raises :class:`SchemaBehindError` naming the
    command when the warehouse has no schema yet or an older one."""
    fp = schema_fingerprint(spec)
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
    from airtrain import evolution

    plan = evolution.pending(wh, spec)
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


def _login_uri(url: str, name: str) -> str:
    """``url`` with its user replaced by ``name`` and no password (for the printed psql command)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{name}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(("postgresql", netloc, parts.path, "", ""))


def _create_reader_login(argv: list[str]) -> int:
    import secrets

    ap = argparse.ArgumentParser(
        prog="python -m airtrain.schema create-reader-login",
        description="create a LOGIN role that inherits the read-only reader role (predictions, labels, "
                    "registry history, validation and drift results)")
    ap.add_argument("name", help="the login to create (lower-case letters, digits, underscores)")
    ap.add_argument("--url", default=os.environ.get("WAREHOUSE_URL"), help="warehouse URL of an admin user")
    ap.add_argument("--reader-role", default="predictions_reader", help="the role to inherit (spec key "
                    "warehouse.reader_role; default predictions_reader)")
    ap.add_argument("--password-stdin", action="store_true", help="read the password from stdin instead of "
                    "generating one")
    ap.add_argument("--reset-password", action="store_true", help="the login exists: give it a new password")
    args = ap.parse_args(argv)
    if not args.url:
        print("error: pass --url or set WAREHOUSE_URL", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else secrets.token_urlsafe(18)
    try:
        done = create_reader_login(Warehouse(args.url), args.name, password, reader_role=args.reader_role,
                                   reset_password=args.reset_password)
    except ReaderLoginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{done}: login {args.name} (inherits {args.reader_role}: read-only)")
    if not args.password_stdin:
        print(f"password: {password}   (shown once; store it in a password manager or ~/.pgpass)")
    print(f"connect:  psql '{_login_uri(args.url, args.name)}'")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "create-reader-login":
        return _create_reader_login(argv[1:])
    from airtrain.migrate import main as migrate

    return migrate(argv)  # the same as `airtrain migrate` (the valid specs; the broken ones named)


if __name__ == "__main__":
    raise SystemExit(main())
