"""The OpenLineage map (airtrain.lineage) names real tasks of the real DAGs: a renamed task would
otherwise silently lose its lineage."""

from __future__ import annotations

from pathlib import Path

from airtrain.lineage import task_tables
from airtrain.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_every_task_with_tables_in_the_map_exists_and_the_extractor_covers_its_type():
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag
    from airtrain_airflow.lineage import AirtrainExtractor

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    covered = set(AirtrainExtractor.get_operator_classnames())
    for kind, dag in (("retrain", build_retrain_dag(spec)), ("monitor", build_monitor_dag(spec))):
        with_tables = {t.task_id for t in dag.tasks if any(task_tables(spec, kind, t.task_id))}
        for task in dag.tasks:
            if task.task_id in with_tables:
                assert task.task_type in covered, f"{kind}.{task.task_id} ({task.task_type}) has no extractor"
        expected = {"ingest", "validate", "train", "evaluate", "promote", "rollback", "score", "publish_predictions",
                    "score_shadow", "begin_scoring", "promotion_hold"} if kind == "retrain" else {"drift_check"}
        assert with_tables == expected, (kind, with_tables)
