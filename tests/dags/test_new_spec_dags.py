"""A new spec's DAGs start paused, and the DAG files read the same spec folder as the tasks."""

from __future__ import annotations

from pathlib import Path

import yaml
from airtrain.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_specs_dags_start_paused_unless_it_says_otherwise(tmp_path):
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag

    shipped = load_spec(ROOT / "include/pipelines/churn.yaml")
    assert build_retrain_dag(shipped).is_paused_upon_creation is False  # `make run` lands its data first
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    del data["schedule"]["start_paused"]
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(data))
    new = load_spec(tmp_path / "churn.yaml")
    assert build_retrain_dag(new).is_paused_upon_creation is True
    assert build_monitor_dag(new).is_paused_upon_creation is True


def test_dag_files_and_tasks_read_specs_from_the_same_folder(tmp_path, monkeypatch):
    import runpy

    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["name"] = "telco"
    (tmp_path / "telco.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(tmp_path))
    from airtrain_airflow.runtime import spec_for

    assert spec_for("telco").name == "telco"
    from airtrain_airflow.bundle import SpecDagBundle

    bundle = SpecDagBundle(name="airtrain", path=str(tmp_path / "dags"))
    bundle.initialize()  # what the DAG processor and a worker do first: one DAG file per spec
    assert sorted(p.name for p in bundle.path.glob("*.py")) == ["telco.py"]
    dags = runpy.run_path(str(bundle.path / "telco.py"))
    assert "telco_retrain" in dags and "telco_monitor" in dags and "churn_retrain" not in dags
