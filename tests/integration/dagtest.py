"""Helpers to run the real retrain DAG with ``dag.test()`` against a test warehouse."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from airtrain.db import Warehouse
from airtrain.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Project:
    """A project root for one test: its own spec dir, landing folder, reports and warehouse."""

    root: Path
    warehouse: Warehouse
    name: str = "churn"

    @property
    def spec_dir(self) -> Path:
        return self.root / "pipelines"

    @property
    def landing(self) -> Path:
        return self.root / "data" / "landing" / self.name

    def write_spec(self, **changes: Any) -> None:
        """Write include/pipelines/churn.yaml with nested ``changes`` ({'promotion': {...}}) applied."""
        data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        self.spec_dir.mkdir(parents=True, exist_ok=True)
        (self.spec_dir / f"{self.name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    def spec(self):
        return load_spec(self.spec_dir / f"{self.name}.yaml")

    def activate(self, monkeypatch) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", self.warehouse.uri)
        monkeypatch.setenv("AIRTRAIN_PROJECT_ROOT", str(self.root))
        monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(self.spec_dir))
        monkeypatch.setenv("AIRTRAIN_REPORTS_DIR", str(self.root / "reports"))

    def run(self, conf: dict[str, Any] | None = None, logical_date: dt.datetime | None = None):
        """One real DAG run with dag.test(); returns (dag_run state, {task_id: state})."""
        from airtrain_airflow.factory import build_retrain_dag

        dag = build_retrain_dag(self.spec())
        logical_date = logical_date or dt.datetime.now(dt.UTC)
        dr = dag.test(logical_date=logical_date, run_conf=conf or {})
        states = {}
        for ti in dr.get_task_instances() if hasattr(dr, "get_task_instances") else []:
            states.setdefault(ti.task_id, []).append(ti.state)
        return dr, {k: (v[0] if len(v) == 1 else v) for k, v in states.items()}


def land_days(p: Project, start: dt.date, days: int, *, rows: int = 400, scenario: Any = "stable",
              label_delay_days: int = 1) -> None:
    """Simulated landing files for ``days`` days from ``start`` and all their (delayed) labels."""
    import pandas as pd
    from airtrain import simulate

    labels = []
    for i in range(days):
        d = start + dt.timedelta(days=i)
        feats, lab = simulate.simulate_day(d, scenario=scenario, rows=rows, start=start,
                                           label_delay_days=label_delay_days)
        simulate.write_landing_file(feats, p.landing, d)
        labels.append(lab)
    simulate.load_labels(p.warehouse, pd.concat(labels))


def module_project(tmp_path_factory, pg_server, prefix: str, overrides: dict[str, Any]):
    """A project on its own warehouse database, its spec = churn.yaml + ``overrides`` (deep-merged),
    activated for a whole test module. Returns (project, monkeypatch); undo the monkeypatch after."""
    import pytest
    from airtrain_dev.demo import write_demo_spec

    mp = pytest.MonkeyPatch()
    wh = Warehouse(pg_server.url(pg_server.create_database(prefix)))
    p = Project(tmp_path_factory.mktemp(prefix), wh)
    write_demo_spec(ROOT / "include/pipelines/churn.yaml", p.spec_dir, overrides)
    p.activate(mp)
    return p, mp


def fetch(wh: Warehouse, query: str, params: tuple = ()) -> list[tuple]:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def copy_landing(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy2(f, dst / f.name)


_ = os
