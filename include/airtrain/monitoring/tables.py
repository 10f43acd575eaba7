"""The monitoring package's tables: drift metrics and decisions per window, the fairness monitor's
realized disparities, the daily canary checks and each model version's drift reference sample.
Applied by :mod:`airtrain.warehouse.ddl` as the part :data:`PART`.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from airtrain.data.tables import table_columns
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import ident
from airtrain.warehouse.ddl import (
    SchemaPart,
    SchemaPlan,
    SchemaReport,
    add_missing_columns,
    cols,
    column_types,
    comment,
)

EVALUATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, rollout_id bigint NOT NULL, evaluated_on date NOT NULL, "
    "candidate_version integer NOT NULL, champion_version integer, metric text NOT NULL, first_day date, "
    "last_day date, days integer, n_candidate integer NOT NULL, n_champion integer NOT NULL, "
    "metric_candidate double precision, metric_champion double precision, diff double precision, "
    "ci_low double precision, ci_high double precision, confidence double precision, "
    "decision text NOT NULL CHECK (decision IN ('wait','graduate','abort')), reason text NOT NULL, run_id text, "
    "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, rollout_id, evaluated_on))")


def create(cur: Any, spec: PipelineSpec, report: SchemaReport) -> None:
    """Every table of the monitoring package (idempotent, additive; the migration's transaction)."""
    mon = spec.warehouse.monitoring_schema
    stmts = [
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
        (EVALUATIONS_DDL, (mon, "canary_evaluations")),
    ]
    for stmt, (schema, table) in stmts:
        cur.execute(sql.SQL(stmt).format(ident(schema, table)))
    # columns added after the first release: warehouses created earlier get them here
    add_missing_columns(cur, mon, "drift_decisions", [
        ("window_start", "date"), ("run_id", "text"), ("drifted", "boolean"), ("drift_share", "double precision"),
        ("current_rows", "integer"), ("details", "jsonb NOT NULL DEFAULT '{}'")], report)
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        ident("drift_metrics_pipeline_metric_idx"), ident(mon, "drift_metrics"), sql.SQL("pipeline, metric")))
    comments = {
        (mon, "canary_evaluations"): "The monitor's daily canary check: labeled rows and realized primary metric per "
                                     "arm, the improvement (candidate - champion, sign flipped for lower-is-better "
                                     "metrics) with its bootstrap interval, and the decision (wait/graduate/abort).",
        (mon, "drift_metrics"): "Drift and performance metrics per monitoring window (long format).",
        (mon, "drift_decisions"): "Monitor decisions per window: no_drift, drift (not yet persistent), cooldown, "
                                  "retrain, insufficient_data or no_champion, with the reason and the report.",
        (mon, "fairness_metrics"): "fairness.monitor per window: the disparity of the champion's published "
                                   "predictions on the labels known at window_end (labeled_start..labeled_end), "
                                   "per attribute and metric; status ok, breach (alerted once: alerted_at) or "
                                   "not_evaluated (too few labeled rows per group), per group in groups.",
    }
    for (schema, table), text in comments.items():
        comment(cur, "TABLE", ident(schema, table), text)
    _reference_table(cur, spec, report)


def _reference_table(cur: Any, spec: PipelineSpec, report: SchemaReport) -> None:
    """The drift reference per model version: the features table's columns and the version's prediction."""
    key, date = spec.entity_key, spec.date_column
    ms, mt = spec.table("reference")
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (model_version integer NOT NULL, {}, prediction double precision, "
        "PRIMARY KEY (model_version, {}, {}))").format(
        ident(ms, mt), cols(table_columns(spec, "features")), ident(key), ident(date)))
    add_missing_columns(cur, ms, mt, table_columns(spec, "features"), report)
    comment(cur, "TABLE", ident(ms, mt), f"{spec.name}: drift reference per model version - a deterministic "
             "sample of the rows it was trained and evaluated on, with its own predictions. Written once per "
             "version by the monitor.")


def plan(cur: Any, spec: PipelineSpec, plan: SchemaPlan) -> None:
    """A feature column widened in the features table (int -> float) is widened in the reference too."""
    fs, ft = spec.table("features")
    ms, mt = spec.table("reference")
    ref = column_types(cur, ms, mt)
    for schema, table, col, old, new in list(plan.widen):
        if (schema, table) == (fs, ft) and ref.get(col) == old:
            plan.widen.append((ms, mt, col, old, new))


#: what the reader role may read: the per-window drift, fairness and canary results (not the reference samples)
READER_TABLES = ("drift_metrics", "drift_decisions", "canary_evaluations", "fairness_metrics")


def reader_tables(spec: PipelineSpec) -> list[tuple[str, str]]:
    return [(spec.warehouse.monitoring_schema, t) for t in READER_TABLES]


PART = SchemaPart("monitoring", create=create, plan=plan, reader_tables=reader_tables)
