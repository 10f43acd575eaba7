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

    Unknown tasks (parameter checks, branches, sensors, notifications) touch no table: ``([], [])``."""
    reg, mon = spec.warehouse.registry_schema, spec.warehouse.monitoring_schema
    t = spec.table
    versions, champions = (reg, "model_versions"), (reg, "champions")
    labels_source = [(spec.labels.schema_, spec.labels.table)] if spec.labels is not None else []
    source = [(spec.source.schema_, spec.source.table)] if isinstance(spec.source, PostgresSource) else []
    if dag_kind == "retrain":
        scoring_in = [t("features"), versions, champions]
        table: dict[str, tuple[list[Table], list[Table]]] = {
            "ingest": (source, [t("raw"), (mon, "ingest_runs")]),
            "validate": ([t("raw")], [t("features"), t("quarantine"), t("labels"), (mon, "validation_runs")]),
            "train": ([t("features"), t("labels"), *labels_source], [versions, t("labels")]),
            "evaluate": ([t("features"), t("labels"), versions, champions],
                         [(reg, "evaluations"), (reg, "feature_importance"), (reg, "fairness"), versions]),
            "promote": ([versions, champions, (reg, "version_status"), (reg, "promotion_holds")],
                        [champions, (reg, "promotion_log"), versions, (reg, "gate_decisions"), (reg, "version_status")]),
            "rollback": ([versions, champions], [champions, (reg, "promotion_log"), (reg, "version_status")]),
            "promotion_hold": ([(reg, "promotion_holds")], [(reg, "promotion_holds")]),
            "score_approved": (scoring_in, [t("predictions")]),
            "begin_scoring": ([champions, t("features")], []),
            "score": (scoring_in, [t("predictions")]),
            "publish_predictions": ([], [t("predictions")]),
            "score_shadow": (scoring_in, [t("shadow_predictions")]),
        }
    elif dag_kind == "monitor":
        table = {
            "drift_check": ([t("features"), t("predictions"), t("labels"), t("reference"), versions, champions],
                            [(mon, "drift_metrics"), (mon, "drift_decisions"), t("reference")]),
        }
    else:
        raise ValueError(f"unknown DAG kind {dag_kind!r} (retrain or monitor)")
    return table.get(task_id, ([], []))
