"""The serving package's tables: the champion's and the shadow predictions (partitioned by date and
model version, swapped in atomically by :mod:`airtrain.serving.publish`) and the ``<name>_latest``
view. Applied by :mod:`airtrain.warehouse.ddl` as the part :data:`PART`; the reader role reads the
whole predictions schema.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from airtrain.data.tables import key_sql_type
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import ident
from airtrain.warehouse.ddl import SchemaPart, SchemaReport, add_missing_columns, comment


def table_columns(spec: PipelineSpec, kind: str) -> list[tuple[str, str]]:
    """(name, SQL type) of the optional columns of the prediction tables (``predictions_explain``)."""
    if kind == "predictions_explain":  # scoring.explain: only when the spec asks for explanations
        if spec.scoring.explain is None:
            return []
        return [("explain_features", "text[]"), ("explain_contributions", "double precision[]")]
    raise KeyError(kind)


def create(cur: Any, spec: PipelineSpec, report: SchemaReport) -> None:
    """The prediction tables and the latest view (idempotent, additive; the migration's transaction)."""
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
        comment(cur, "TABLE", ident(s, t), f"{spec.name}: batch predictions of the {what} model, one row per "
                 f"{key}, as_of_date and model_version. Partitioned by (as_of_date, model_version); a re-run of "
                 "a date swaps its partition atomically.")
        for col, text in [(key, "The entity scored."), ("as_of_date", "Date of the features that were scored."),
                          ("model_version", "registry.model_versions.version that produced the score."),
                          ("score", "Probability of the positive class (classification) or the prediction."),
                          ("predicted_label", "score >= the spec's evaluation.threshold (classification)."),
                          ("run_id", "Airflow run that wrote the row."), ("scored_at", "When the row was written."),
                          ("arm", "'champion', or 'candidate' for the entities a running canary scores "
                                  "(registry.rollouts); 'shadow' in the shadow table.")]:
            comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(s, t), ident(col)), text)
        # nullable, no default: adding them to the partitioned parent is a catalog change only
        add_missing_columns(cur, s, t, table_columns(spec, "predictions_explain"), report)
        for col, text in [("explain_features", "scoring.explain: the top-k model inputs by |contribution| "
                           "(largest first)."),
                          ("explain_contributions", "scoring.explain: score minus the score with that feature set "
                           "to its training reference (median / most frequent), same order as explain_features.")]:
            if table_columns(spec, "predictions_explain"):
                comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(s, t), ident(col)), text)
    ls, lt = spec.table("predictions_latest")
    # The newest published prediction per entity, whichever model version made it: a champion change
    # never empties the view (the previous champion's rows stay visible until the new one has scored),
    # and a date scored by several versions still gives one row per entity - the most recently scored.
    cur.execute(sql.SQL(
        "CREATE OR REPLACE VIEW {v} AS SELECT DISTINCT ON (p.{k}) p.{k}, p.as_of_date, p.model_version, p.score, "
        "p.predicted_label, p.run_id, p.scored_at, p.arm FROM {p} p "
        "ORDER BY p.{k}, p.as_of_date DESC, p.scored_at DESC, p.model_version DESC").format(
        v=ident(ls, lt), k=ident(key), p=ident(ps, pt)))
    comment(cur, "VIEW", ident(ls, lt), f"{spec.name}: the newest published prediction per {key} (newest "
             "as_of_date, then the most recently scored model version). Never empty once a date was scored.")


def reader_schemas(spec: PipelineSpec) -> list[str]:
    return [spec.warehouse.predictions_schema]


def columns(spec: PipelineSpec) -> dict[str, Any]:
    return {"predictions_explain": table_columns(spec, "predictions_explain")}


PART = SchemaPart("serving", create=create, reader_schemas=reader_schemas, columns=columns)
