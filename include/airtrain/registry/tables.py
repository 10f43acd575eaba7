"""The registry's tables: model versions (with their artifacts), the champions, the append-only
promotion log, the evaluations with their importance and fairness rows, the model cards, approvals,
canary rollouts, version status (rejections), promotion holds and every gate decision. Applied by
:mod:`airtrain.warehouse.ddl` as the part :data:`PART`.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from airtrain.registry import estimators
from airtrain.registry.versions import versions_needing
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import ident
from airtrain.warehouse.ddl import DOC, SchemaPart, SchemaPlan, SchemaReport, add_missing_columns, comment

APPEND_ONLY_FN = """
CREATE OR REPLACE FUNCTION {schema}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$"""


ROLLOUTS_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, pipeline text NOT NULL, "
    "candidate_version integer NOT NULL, champion_version integer, fraction double precision NOT NULL "
    "CHECK (fraction > 0 AND fraction < 1), salt text NOT NULL, started_on date, "
    "started_at timestamptz NOT NULL DEFAULT now(), status text NOT NULL CHECK (status IN "
    "('running','graduated','aborted','not_started')), decided_on date, decided_at timestamptz, reason text, "
    "decided_by text, run_id text NOT NULL, decided_run_id text, promotion_id bigint, alerted_at timestamptz, "
    "ends_on date)")
ROLLOUTS_RUNNING_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_running ON {} (pipeline) WHERE status = 'running'"
APPROVALS_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, run_id text NOT NULL, version integer NOT NULL, "
    "champion_version integer, decision text NOT NULL CHECK (decision IN ('approved','rejected','timed_out')), "
    "responded_by text, comment text, responded_at timestamptz, promoted boolean, outcome text, "
    "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, run_id, version))")


def create(cur: Any, spec: PipelineSpec, report: SchemaReport) -> None:
    """Every table of the registry (idempotent, additive; the migration's transaction)."""
    reg = spec.warehouse.registry_schema
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
        (APPROVALS_DDL, (reg, "approvals")),  # human approval decisions (promotion.approval)
        (ROLLOUTS_DDL, (reg, "rollouts")), (ROLLOUTS_RUNNING_INDEX, (reg, "rollouts")),  # rollout.strategy
    ]
    for stmt, (schema, table) in stmts:
        cur.execute(sql.SQL(stmt).format(ident(schema, table)))
    _audit_tables(cur, reg)
    # columns added after the first release: warehouses created earlier get them here
    add_missing_columns(cur, reg, "model_versions", [("artifact_signature", "text")], report)
    # issue 27: the spec each version was trained under
    add_missing_columns(cur, reg, "model_versions", [("spec_text", "text")], report)
    # the partition date a champion change is effective for (registry.champion_as_of); rows logged before
    # it existed are read as their version's training as_of (the log is append-only: never back-filled)
    add_missing_columns(cur, reg, "promotion_log", [("effective_on", "date")], report)
    # the first partition date a decided canary no longer scores (rollouts.in_force: a re-run of a date scores
    # it with the arms in force on that date); rows decided before it existed are read as decided_on + 1
    add_missing_columns(cur, reg, "rollouts", [("ends_on", "date")], report)
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
    cur.execute(sql.SQL(estimators.DDL).format(ident(reg, estimators.TABLE)))  # issue 24
    comment(cur, "TABLE", ident(reg, estimators.TABLE), estimators.COMMENT)
    _release_state_tables(cur, reg, report)  # rejected versions, promotion holds, per-run gate decisions
    for table, cols in [("evaluations", "pipeline, version"), ("promotion_log", "pipeline, id")]:
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            ident(f"{table}_{cols.replace(', ', '_')}_idx"), ident(reg, table), sql.SQL(cols)))
    comments = {
        (reg, "model_versions"): "Every trained model version: artifact (skops bytes + sha256), params, "
                                 "holdout metrics, gate decision and lineage (data window, data hash, versions).",
        (reg, "champions"): "The live model per pipeline: exactly one row per pipeline (primary key).",
        (reg, "promotion_log"): "Append-only history of champion changes: who/what promoted which version, "
                                "when, why, with the metrics. UPDATE/DELETE/TRUNCATE are refused.",
        (reg, "evaluations"): "Challenger and champion metrics on the same time-based holdout, overall "
                              "(slice_column = '') and per slice.",
        (reg, "rollouts"): "Canary rollouts (rollout.strategy: canary): one row per canary - candidate and champion "
                           "version, the share of entities and the salt of their md5 assignment, running / "
                           "graduated / aborted / not_started, who decided, when and why.",
        (reg, "approvals"): "Human approval of promotions (promotion.approval: required): one row per run and "
                            "challenger - approved, rejected or timed_out, who answered, their comment, whether "
                            "it was promoted and why not.",
    }
    for (schema, table), text in comments.items():
        comment(cur, "TABLE", ident(schema, table), text)
    col_comments = {
        (reg, "champions", "version"): "Version in registry.model_versions that is live now.",
        (reg, "promotion_log", "action"): "promote (gate passed), force_promote (manual override) or rollback.",
        (reg, "promotion_log", "actor"): "Who or what made the change: airtrain:gate (the gate promoted "
                                         "automatically), airtrain:monitor (a canary graduated), user:<name> (a "
                                         "person: approval, force_promote, rollback, canary_action).",
        (reg, "promotion_log", "effective_on"): "The first partition date the change is for: the model that scores "
                                                "a date D is the to_version of the newest row (by id) with "
                                                "effective_on <= D (NULL: the version's training as_of).",
        (reg, "rollouts", "ends_on"): "The first partition date this decided canary no longer scores (the day "
                                      "after the monitor's decision; the run's date for a person's decision; the "
                                      "champion change's effective_on). A date D with started_on <= D < ends_on is "
                                      "scored with both arms, also when it is re-run later.",
        (reg, "model_versions", "lineage"): "Training window, row counts, data hash, library and code versions.",
        (reg, "model_versions", "artifact_signature"): "hmac-sha256:<key id>:<hex> over (pipeline, version, "
                                                       "artifact_sha256), made with a key the warehouse never "
                                                       "holds; verified before every load.",
    }
    for (schema, table, col), text in col_comments.items():
        comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(schema, table), ident(col)), text)


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
        comment(cur, "TABLE", ident(reg, table), text)
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
    add_missing_columns(cur, reg, "promotion_log", [("triggered_by", "text")], report)
    comment(cur, "COLUMN", sql.SQL("{}.{}").format(ident(reg, "promotion_log"), ident("triggered_by")),
             "Who or what started the run that made the change: user:<name> (a person triggered it) or "
             "airflow:<run type> (scheduled, backfill, asset-triggered); NULL in rows written before it existed.")


def _audit_tables(cur, reg: str) -> None:
    """Explanations and fairness per evaluation (issue 13): created if missing, never altered."""
    for table, (ddl, text) in AUDIT_TABLES.items():
        cur.execute(sql.SQL(ddl).format(ident(reg, table)))
        cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (pipeline, version)").format(
            ident(f"{table}_pipeline_version_idx"), ident(reg, table)))
        comment(cur, "TABLE", ident(reg, table), text)


def plan(cur: Any, spec: PipelineSpec, plan: SchemaPlan) -> None:
    """A feature removed from the spec while a live version (the champion, a running canary's
    candidate, a challenger awaiting approval) uses it as a model input is refused, naming the versions
    (it could no longer score)."""
    for col, users in versions_needing(cur, spec, plan.removed).items():
        plan.refused.append(
            f"feature '{col}' was removed from the spec, but {', '.join(users)} use(s) it as a model input: it "
            f"could no longer score. Keep the feature in the spec with 'model_input: false' (still ingested and "
            f"validated, not used by new models) until no live version needs it - a champion trained without it, "
            f"a decided canary - then remove it ({DOC}, 'Removing a feature')")


#: what the reader role may read of the registry: which model is live and why, evaluations, cards,
#: approvals, rollouts, gate decisions. Not the model artifacts (registry.model_versions).
READER_TABLES = ("champions", "promotion_log", "evaluations", "feature_importance", "fairness", "model_cards",
                 "approvals", "rollouts", "gate_decisions", "version_status", "promotion_holds")


def reader_tables(spec: PipelineSpec) -> list[tuple[str, str]]:
    return [(spec.warehouse.registry_schema, t) for t in READER_TABLES]


PART = SchemaPart("registry", create=create, plan=plan, reader_tables=reader_tables)
