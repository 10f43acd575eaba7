"""Helpers to run the real retrain DAG with ``dag.test()`` against a test warehouse."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from airtrain.spec import load_spec
from airtrain.warehouse.connection import Warehouse

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

    def respec(self, *layers: dict[str, Any]) -> None:
        """Write the project's spec: include/pipelines/churn.yaml with ``layers`` deep-merged in order."""
        from airtrain_dev.demo import write_demo_spec

        write_demo_spec(ROOT / "include/pipelines/churn.yaml", self.spec_dir, merged(*layers))

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


#: the test spec most integration tests start from: churn.yaml with labels one day late (so a few
#: landed days are enough to train), a 10-day training window with a 2-day holdout, fast retries
TEST_SPEC: dict[str, Any] = {
    "target": {"label_delay_days": 1},
    "training": {"min_rows": 500, "window_days": 10, "holdout_days": 2},
    "schedule": {"retry_delay_minutes": 0.01},
    # permutation importance and fairness cost ~2-3 s per evaluated model; they have their own tests
    # (test_explain_fairness.py), the demo spec and the e2e months run them
    "explain": {"importance": False},
    "fairness": None,
}


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge spec override layers (later layers win)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            deep = k not in ("params", "param_grid") and isinstance(v, dict) and isinstance(out.get(k), dict)
            out[k] = merged(out[k], v) if deep else v  # an estimator's params are replaced whole
    return out


def template_project(tmp_path_factory, pg_server, prefix: str, *, overrides: dict[str, Any], start: dt.date,
                     days: int, rows: int = 400, scenario: Any = "stable", bootstrap: dict[str, Any] | None = None,
                     setup: Any = None, monkeypatch=None):
    """A project whose warehouse is a copy of a template built once per test session.

    The template holds ``days`` simulated landing days from ``start`` (labels loaded, as late as the
    spec's ``label_delay_days``) and, when ``bootstrap`` is a run conf, the state after that real
    retrain DAG run (typically the first champion); ``setup(project)``, when given, runs after that
    inside the build. Building it costs a DAG run once per session; every later caller (in any
    xdist worker) gets a ``CREATE DATABASE … TEMPLATE`` copy and a copy of its folder in well under
    a second. Needs the ``airflow_db`` fixture when ``bootstrap`` is given. Returns (project,
    monkeypatch) like :func:`module_project`; undo the monkeypatch after.
    """
    import json
    import tempfile

    import pytest
    from airtrain_dev.demo import write_demo_spec

    spec_text = (ROOT / "include/pipelines/churn.yaml").read_text()
    key_src = json.dumps([spec_text, overrides, str(start), days, rows, repr(scenario), bootstrap,
                          getattr(setup, "__qualname__", None)], sort_keys=True, default=str)
    key = f"{prefix}_{hashlib.blake2b(key_src.encode(), digest_size=5).hexdigest()}"
    tpl_root = Path(tempfile.gettempdir()) / f"airtrain-{pg_server.session}-templates" / key

    def build(db: str) -> None:
        mp = pytest.MonkeyPatch()
        try:
            shutil.rmtree(tpl_root, ignore_errors=True)
            p = Project(tpl_root, Warehouse(pg_server.url(db)))
            write_demo_spec(ROOT / "include/pipelines/churn.yaml", p.spec_dir, overrides)
            p.activate(mp)
            land_days(p, start, days, rows=rows, scenario=scenario,
                      label_delay_days=p.spec().target.label_delay_days or 1)
            if bootstrap is not None:
                dr, states = p.run(bootstrap)
                if str(dr.state) != "success":
                    raise RuntimeError(f"template {key}: the bootstrap run failed: {states}")
            if setup is not None:
                setup(p)
        finally:
            mp.undo()

    template = pg_server.template(key, build)
    mp = monkeypatch or pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp(prefix)
    shutil.copytree(tpl_root, root, dirs_exist_ok=True)
    p = Project(root, Warehouse(pg_server.url(pg_server.create_database(prefix, template=template))))
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


def hand_staged(wh, spec, target, run_id: str, select: str, params: tuple = ()):
    """A stage of ``target`` as one shard would leave it, with the rows of ``select`` (a SELECT of the
    prediction columns ``customer_id, as_of_date, model_version, score, run_id``): for publish tests
    that need no model. Returns the target."""
    from airtrain.serving import scoring
    from psycopg2 import sql

    with wh.connect() as conn, conn.cursor() as cur:
        scoring.create_stage(cur, spec, target, run_id)
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
            sql.Identifier(target.schema, target.shard_table(0)), sql.Identifier(target.schema, target.stage)))
        cur.execute(sql.SQL("INSERT INTO {} (customer_id, as_of_date, model_version, score, run_id) ").format(
            sql.Identifier(target.schema, target.shard_table(0))) + sql.SQL(select), params)
        rows = cur.rowcount
        cur.execute("SELECT %s::regclass::oid", (f'"{target.schema}"."{target.stage}"',))
        for ddl in scoring.finish_shard_sql(spec, target, 0, 1, cur.fetchone()[0], run_id=run_id, rows=rows):
            cur.execute(ddl)
    return target
