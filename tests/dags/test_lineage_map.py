"""The OpenLineage map (airtrain.lineage) names real tasks of the real DAGs: a renamed task would
otherwise silently lose its lineage. (What each task really reads and writes is checked against
PostgreSQL's own counters in tests/integration/test_openlineage.py and the approval, canary and
rollback runs.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from airtrain.lineage import task_tables
from airtrain.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
CHURN = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
RELEASE = {**CHURN, "promotion": {**CHURN["promotion"], "approval": "required"},
           "rollout": {"strategy": "canary"}, "schedule": {**CHURN["schedule"], "max_active_runs": 2}}
RETRAIN = {"ingest", "validate", "train", "evaluate", "promote", "rollback", "score", "publish_predictions",
           "score_shadow", "begin_scoring", "promotion_hold", "prepare"}


@pytest.mark.parametrize("data, retrain, monitor", [
    pytest.param(CHURN, RETRAIN, {"drift_check", "notify"}, id="churn"),
    pytest.param(RELEASE, RETRAIN | {"approve_promotion", "promote_approved", "decide_canary", "score_approved"},
                 {"drift_check", "notify", "canary_check"}, id="approval-and-canary"),
])
def test_every_task_with_tables_in_the_map_exists_and_the_extractor_covers_its_type(data, retrain, monitor):
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag
    from airtrain_airflow.lineage import AirtrainExtractor

    spec = parse_spec(data)
    covered = set(AirtrainExtractor.get_operator_classnames())
    for kind, dag in (("retrain", build_retrain_dag(spec)), ("monitor", build_monitor_dag(spec))):
        with_tables = {t.task_id for t in dag.tasks if any(task_tables(spec, kind, t.task_id))}
        for task in dag.tasks:
            if task.task_id in with_tables:
                assert task.task_type in covered, f"{kind}.{task.task_id} ({task.task_type}) has no extractor"
        assert with_tables == (retrain if kind == "retrain" else monitor), (kind, with_tables)


def test_tables_written_only_under_a_spec_option_are_listed_only_with_it():
    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    outputs = set(task_tables(spec, "retrain", "evaluate")[1])
    assert {("registry", "feature_importance"), ("registry", "fairness"), ("registry", "model_cards")} <= outputs
    bare = parse_spec({**CHURN, "explain": {"importance": False}, "fairness": None})
    outputs = set(task_tables(bare, "retrain", "evaluate")[1])
    assert ("registry", "feature_importance") not in outputs and ("registry", "fairness") not in outputs
    assert ("monitoring", "fairness_metrics") in task_tables(spec, "monitor", "drift_check")[1]
    assert ("monitoring", "fairness_metrics") not in task_tables(bare, "monitor", "drift_check")[1]
    # labels from the batch are written by validate; from a labels table, by train
    assert ("features", "churn_labels") not in task_tables(spec, "retrain", "validate")[1]
    in_batch = parse_spec({k: v for k, v in CHURN.items() if k != "labels"} | {
        "target": {**CHURN["target"], "label_delay_days": 0}})
    assert ("features", "churn_labels") in task_tables(in_batch, "retrain", "validate")[1]
