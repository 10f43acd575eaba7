"""The release wiring (issue 12): the monitor is scheduled on the predictions asset the retrain's
publish emits, and with approval required scoring never depends on the human."""

from __future__ import annotations

from pathlib import Path

import yaml
from airtrain.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path, **sections):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(data))
    return load_spec(tmp_path / "churn.yaml")


def test_the_monitor_is_scheduled_on_the_asset_the_publish_emits(tmp_path):
    from airflow.sdk import Asset, AssetOrTimeSchedule
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    outlets = build_retrain_dag(spec).get_task("publish_predictions").outlets
    assert [o.name for o in outlets] == ["airtrain.churn.predictions"]
    monitor = build_monitor_dag(spec)
    assert isinstance(monitor.schedule, Asset) and monitor.schedule == outlets[0]
    timed = build_monitor_dag(_spec(tmp_path, schedule={"monitor_on": "predictions_or_cron"}))
    assert isinstance(timed.schedule, AssetOrTimeSchedule)
    assert timed.schedule.timetable.expression == spec.schedule.monitor


def test_with_approval_required_scoring_does_not_wait_for_the_approval(tmp_path):
    from airtrain_airflow.factory import build_retrain_dag
    from airtrain_airflow.operators.approval import PromotionApprovalOperator

    plain = build_retrain_dag(load_spec(ROOT / "include/pipelines/churn.yaml"))
    assert "approve_promotion" not in plain.task_ids
    dag = build_retrain_dag(_spec(tmp_path, promotion={"approval": "required", "approvers": ["bob"]},
                                  schedule={"max_active_runs": 2}))
    approve = dag.get_task("approve_promotion")
    assert isinstance(approve, PromotionApprovalOperator)
    assert approve.upstream_task_ids == {"approval_needed"} and dag.get_task("approval_needed").upstream_task_ids == {
        "promote"}
    assert approve.downstream_task_ids == {"promote_approved"}
    assert approve.assigned_users == [{"id": "bob", "name": "bob"}] and approve.defaults == ["Reject"]
    assert approve.response_timeout.total_seconds() == 20 * 3600
    assert "approve_promotion" not in dag.get_task("begin_scoring").get_flat_relative_ids(upstream=True)
    assert "approve_promotion" not in dag.get_task("publish_predictions").get_flat_relative_ids(upstream=True)
    # the first model waits for approval with its date unscored: scored after the approval, announced to the monitor
    score = dag.get_task("score_approved")
    assert score.upstream_task_ids == {"promote_approved", "check_params"}
    assert [o.name for o in score.outlets] == ["airtrain.churn.predictions"]


def _ui_marks_required(schema: dict) -> bool:
    """Airflow 3.3's trigger form: a param is "required" when its schema has a type that does not
    allow null (ui/src: ``!!schema.type && (!Array.isArray(schema.type) || !schema.type.includes("null"))``)."""
    kind = schema.get("type")
    return bool(kind) and (not isinstance(kind, list) or "null" not in kind)


def test_the_trigger_form_marks_no_on_off_param_as_required():
    """'Force promotion', 'Dry run' and 'Train now' are check boxes: unticked is an answer, not a
    missing value. The rule above is the installed UI's own (checked in its bundle)."""
    import re

    import airflow
    from airtrain_airflow.factory import build_retrain_dag

    bundle = "".join(p.read_text(errors="replace") for p in
                     (Path(airflow.__file__).parent / "ui/dist/assets").glob("index-*.js"))
    assert re.search(r"=e=>!!e\.schema\.type&&\(!Array\.isArray\(e\.schema\.type\)\|\|!e\.schema\.type\.includes\("
                     r"`null`\)\)", bundle), "the UI's rule for required params changed: update _ui_marks_required"
    dag = build_retrain_dag(load_spec(ROOT / "include/pipelines/churn.yaml"))
    flags = {k: dag.params.get_param(k) for k in dag.params if "boolean" in str(dag.params.get_param(k).schema)}
    assert set(flags) == {"force_promote", "dry_run", "force_train"}
    for name, param in flags.items():
        assert not _ui_marks_required(param.schema), name
        assert param.value is False  # unticked by default
        param.resolve(None)  # an empty box is accepted ...
        assert param.resolve(True) is True  # ... and a ticked one
