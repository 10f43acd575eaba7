"""OpenLineage for airtrain tasks: an extractor that names the warehouse tables a task read and wrote.

Registered with ``[openlineage] extractors = airtrain_airflow.lineage.AirtrainExtractor`` (the dev
stack and docker-compose set ``AIRFLOW__OPENLINEAGE__EXTRACTORS``). It runs in the worker when the
OpenLineage listener builds a task's START/COMPLETE event, so nothing is resolved at DAG parse time:
the pipeline comes from the task (``pipeline`` attribute or the DAG id ``<name>_retrain`` /
``<name>_monitor``), the tables from :func:`airtrain.lineage.task_tables`, and host, port and
database from the spec's warehouse connection. Dataset naming follows the OpenLineage Postgres
convention (namespace ``postgres://host:port``, name ``database.schema.table``), the same as
``airflow.providers.postgres.assets.postgres`` gives for ``postgres://`` assets.

``ingest`` of a ``files`` source also names the landing files of the run's dates as inputs, named
like Airflow's own file operators name an ``ObjectStoragePath`` (namespace ``file`` with the
absolute path, or ``s3://<bucket>`` with the key, ...).

Tasks that are not airtrain's get an empty result, and the provider falls back to hook lineage or
declared inlets/outlets as usual.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.openlineage.extractors.base import BaseExtractor, OperatorLineage


def _pipeline_and_kind(operator: Any) -> tuple[str, str] | None:
    dag_id = getattr(operator, "dag_id", "") or ""
    for kind in ("retrain", "monitor"):
        if dag_id.endswith(f"_{kind}"):
            return getattr(operator, "pipeline", None) or dag_id[: -len(kind) - 1], kind
    return None


def datasets(spec: Any, tables: list[tuple[str, str]], conn: Any) -> list[Any]:
    """OpenLineage datasets for ``tables`` on the warehouse of connection ``conn``."""
    from openlineage.client.event_v2 import Dataset

    host = conn.host or "localhost"
    port = conn.port or 5432
    database = conn.schema or "postgres"
    return [Dataset(namespace=f"postgres://{host}:{port}", name=f"{database}.{schema}.{table}")
            for schema, table in dict.fromkeys(tables)]


def landing_datasets(spec: Any, operator: Any) -> list[Any]:
    """The landing files ``ingest`` reads: one per date of the run's plan (its rendered argument)."""
    import datetime as dt

    from airtrain.data.ingest import source_relpath
    from airtrain.spec import FilesSource
    from openlineage.client.event_v2 import Dataset

    from airtrain_airflow.storage import landing_root

    if not isinstance(spec.source, FilesSource):
        return []
    plan = next((a for a in getattr(operator, "op_args", None) or () if isinstance(a, dict) and "dates" in a), None)
    if plan is None:
        return []
    root = landing_root()
    out = []
    for d in plan["dates"]:
        path = root / source_relpath(spec, dt.date.fromisoformat(d))
        name = "/" + path.key.lstrip("/") if path.namespace == "file" else path.key
        out.append(Dataset(namespace=path.namespace, name=name))
    return out


class AirtrainExtractor(BaseExtractor):
    """Inputs/outputs of airtrain's tasks (decorated ``@task`` steps and its operators)."""

    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        return ["_PythonDecoratedOperator", "ValidateOperator", "BatchPredictionOperator",
                "PublishPredictionsOperator", "DriftCheckOperator", "PromotionApprovalOperator"]

    def _lineage(self) -> OperatorLineage:
        found = _pipeline_and_kind(self.operator)
        if found is None:
            return OperatorLineage()
        name, kind = found
        from airflow.providers.postgres.hooks.postgres import PostgresHook
        from airtrain.lineage import task_tables
        from airtrain.spec import load_spec, spec_dir

        path = spec_dir() / f"{name}.yaml"
        if not path.exists():
            return OperatorLineage()
        spec = load_spec(path)
        inputs, outputs = task_tables(spec, kind, self.operator.task_id)
        if not inputs and not outputs:
            return OperatorLineage()
        conn = PostgresHook.get_connection(spec.warehouse.conn_id)
        files = landing_datasets(spec, self.operator) if kind == "retrain" and self.operator.task_id == "ingest" else []
        return OperatorLineage(inputs=[*files, *datasets(spec, inputs, conn)], outputs=datasets(spec, outputs, conn))

    def _execute_extraction(self) -> OperatorLineage | None:
        return self._lineage()

    def extract_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        return self._lineage()
