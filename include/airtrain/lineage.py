"""Which warehouse tables each task of a pipeline reads and writes: the lineage map. Pure.

The Airflow side (``airtrain_airflow.lineage``) turns it into OpenLineage input/output datasets
named like the OpenLineage Postgres convention (namespace ``postgres://host:port``, name
``database.schema.table``), so a lineage backend (Marquez, DataHub, ...) sees the real tables.
Keeping the map here, next to the steps that do the I/O, lets a unit test hold it to the code.
"""

from __future__ import annotations

from airtrain.spec import PipelineSpec, PostgresSource

Table = tuple[str, str]  # (schema, table)


def task_tables(spec: PipelineSpec, dag_kind: str, task_id: str) -> tuple[list[Table], list[Table]]:
    """(inputs, outputs) of task ``task_id`` of the pipeline's ``retrain`` or ``monitor`` DAG.

    Every table a task reads (scans) is an input or an output, every table it writes is an output:
    ``tests/integration/test_openlineage.py`` (and the approval, canary and rollback runs) hold this
    map to what PostgreSQL counts each task reading and writing (``tests/integration/tabletouch.py``).
    Tables a task writes only under a spec option are listed only with that option. Unknown tasks
    (parameter checks, branches, sensors) touch no table: ``([], [])``. ``prepare`` reads which versions
    are live and checks the schema fingerprint (``registry.schema_migrations``: bookkeeping, not data
    lineage)."""
    reg, mon = spec.warehouse.registry_schema, spec.warehouse.monitoring_schema
    t = spec.table
    versions, champions, log = (reg, "model_versions"), (reg, "champions"), (reg, "promotion_log")
    cards, rollouts, approvals = (reg, "model_cards"), (reg, "rollouts"), (reg, "approvals")
    labels_source = [(spec.labels.schema_, spec.labels.table)] if spec.labels is not None else []
    source = [(spec.source.schema_, spec.source.table)] if isinstance(spec.source, PostgresSource) else []
    canary = spec.rollout.strategy == "canary"
    audit = [(reg, "feature_importance"), (reg, "fairness")]  # what a model card shows of an evaluation
    status, holds, gates = (reg, "version_status"), (reg, "promotion_holds"), (reg, "gate_decisions")
    card_state = [status, gates]  # what the model card shows besides the evaluation: rejections, gate decisions
    release_state = [*card_state, holds]  # the gate's refusal checks (under the promotion lock) read the hold too
    if dag_kind == "retrain":
        written_audit = ([(reg, "feature_importance")] if spec.explain.importance else []) + (
            [(reg, "fairness")] if spec.fairness is not None else [])
        # a champion change: the swap, its log row, the version's gate/metrics, the cards; a canary's rollout
        promotion = [champions, log, versions, cards, *([rollouts] if canary else [])]
        table: dict[str, tuple[list[Table], list[Table]]] = {
            # the schema plan: which versions are live (champion, a running canary's candidate) - a removed
            # feature they need is refused (airtrain.registry.tables.plan)
            "prepare": ([champions, rollouts], []),
            "ingest": (source, [t("raw"), (mon, "ingest_runs")]),
            "validate": ([t("raw"), (mon, "ingest_runs")],
                         [t("features"), t("quarantine"), (mon, "validation_runs"),
                          *([t("labels")] if spec.labels_from_batch else [])]),
            "train": ([t("features"), t("labels"), *labels_source], [versions, t("labels")]),
            "evaluate": ([t("features"), t("labels"), versions, champions, log, *audit, cards, *card_state],
                         [(reg, "evaluations"), *written_audit, versions, cards]),
            "promote": ([versions, champions, (reg, "evaluations"), *audit, cards, rollouts, *release_state],
                        [*promotion, gates]),
            "approve_promotion": ([versions], [approvals, versions]),
            # the same locked swap as promote; both cards rebuilt
            "promote_approved": ([versions, champions, approvals, rollouts, log, (reg, "evaluations"), *audit, cards,
                                  *release_state],
                                 [champions, log, versions, approvals, cards, gates, *([rollouts] if canary else [])]),
            # a person's champion change through the same swap (a running canary is aborted with it); the
            # version rolled back from is rejected (registry.version_status)
            "rollback": ([versions, champions, rollouts, t("features"), log, (reg, "evaluations"), *audit, cards,
                          *card_state],
                         [champions, log, status, cards, *([rollouts] if canary else [])]),
            "promotion_hold": ([holds], [holds]),
            "decide_canary": ([versions, champions, rollouts], [champions, log, rollouts]),
            "begin_scoring": ([champions, versions, log, *([t("features")] if spec.scoring.rows_per_shard else []),
                               *([rollouts] if canary else [])], []),
            "score": ([t("features"), versions], [t("predictions")]),
            # the first model approved: its date scored by it (when begin_scoring had no champion)
            "score_approved": ([t("features"), versions, champions, t("predictions")], [t("predictions")]),
            "publish_predictions": ([], [t("predictions")]),
            "score_shadow": ([t("features"), versions, champions], [t("shadow_predictions")]),
        }
    elif dag_kind == "monitor":
        fairness_monitor = [(mon, "fairness_metrics")] if spec.fairness is not None and spec.fairness.monitor else []
        table = {
            # the champion of the window's date comes from the promotion log (registry.champion_as_of)
            "drift_check": ([t("features"), t("predictions"), t("labels"), *labels_source, t("reference"), versions,
                             log],
                            [(mon, "drift_metrics"), (mon, "drift_decisions"), t("reference"), *fairness_monitor,
                             *([t("labels")] if spec.labels is not None else [])]),  # labels known by the window
            # records the triggered run on the window; marks a fairness breach alerted
            "notify": ([], [(mon, "drift_decisions"), *fairness_monitor]),
            # the labels known now (loaded from the labels table), per arm; a graduation swaps the champion
            "canary_check": ([t("predictions"), *labels_source, rollouts],
                             [(mon, "canary_evaluations"), rollouts, t("labels"), champions, log]),
        }
    else:
        raise ValueError(f"unknown DAG kind {dag_kind!r} (retrain or monitor)")
    return table.get(task_id, ([], []))
