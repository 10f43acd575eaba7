"""DAG integrity and policy: every DAG file imports cleanly, cheaply, and follows the house rules.

The DAG files are the ones every stack's DAG bundle generates, one per spec
(:mod:`airtrain_airflow.bundle`), from the shipped specs."""

from __future__ import annotations

import ast
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "numpy", "sklearn", "great_expectations", "evidently", "pyarrow", "scipy", "skops")


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Path:
    """The DAG files the bundle generates from the shipped specs (include/pipelines)."""
    from airtrain.spec import DEFAULT_SPEC_DIR
    from airtrain_airflow.bundle import sync_dag_files

    out = tmp_path_factory.mktemp("dags")
    assert sync_dag_files(DEFAULT_SPEC_DIR, out)
    return out


@pytest.fixture(scope="module")
def dagbag(dags_folder):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dags_folder))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_every_spec_has_its_dags(dagbag):
    from airtrain.spec import load_specs

    specs = load_specs()
    assert specs, "no pipeline specs shipped"
    for spec in specs:
        assert spec.retrain_dag_id in dagbag.dag_ids
        assert spec.monitor_dag_id in dagbag.dag_ids
    assert len(dagbag.dag_ids) == 2 * len(specs)


def test_the_dags_are_wired_as_documented(dagbag):
    """The task graph of each DAG: the lifecycle order the README describes."""
    from airtrain.spec import load_specs

    def downstream(dag, task_id):
        return set(dag.get_task(task_id).downstream_task_ids)

    for spec in load_specs():
        r = dagbag.dags[spec.retrain_dag_id]
        assert downstream(r, "check_params") >= {"route"}
        assert downstream(r, "route") == {"prepare", "rollback", "promotion_hold"}
        assert downstream(r, "ingest") >= {"validate"} and downstream(r, "validate") >= {"train"}
        assert downstream(r, "train") >= {"evaluate"} and downstream(r, "evaluate") >= {"promote"}
        assert "begin_scoring" in downstream(r, "promote") and "begin_scoring" in downstream(r, "rollback")
        assert downstream(r, "score") == {"publish_predictions"}
        m = dagbag.dags[spec.monitor_dag_id]
        assert downstream(m, "drift_check") >= {"retrain_due"}
        assert downstream(m, "retrain_due") == {"trigger_retrain"}
        assert m.get_task("trigger_retrain").trigger_dag_id == spec.retrain_dag_id


def test_policy(dagbag):
    assert dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        assert dag.schedule is not None if hasattr(dag, "schedule") else True
        assert dag.timetable is not None
        assert dag.catchup is False, dag_id
        assert dag.start_date is not None and dag.start_date.tzinfo is not None, dag_id
        assert dag.start_date <= dt.datetime.now(dt.UTC), dag_id
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", (dag_id, t.task_id)
            assert t.retries >= 2, (dag_id, t.task_id, t.retries)
            assert t.retry_exponential_backoff, (dag_id, t.task_id)
            assert t.execution_timeout is not None, (dag_id, t.task_id)


def test_schedule_is_explicit_in_every_dag_call():
    """`schedule=` must be passed explicitly (Airflow 3 changed the default to None)."""
    for path in [ROOT / "plugins/airtrain_airflow/factory.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"dag", "DAG"}:
                keys = {k.arg for k in node.keywords}
                assert {"schedule", "start_date", "catchup", "tags", "doc_md"} <= keys, (path, keys)


def test_importing_dags_loads_nothing_heavy(dags_folder):
    """Parsing a DAG file must not import pandas/sklearn/GX/Evidently (checked in a clean process)."""
    code = (
        "import sys, runpy\n"
        f"sys.path[:0] = [{str(ROOT / 'include')!r}, {str(ROOT / 'plugins')!r}]\n"
        f"for f in {sorted(str(p) for p in dags_folder.glob('*.py'))!r}:\n"
        "    runpy.run_path(f)\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")][-1]
    assert line == "HEAVY=", f"heavy modules imported at parse time: {line}"


def test_parsing_does_no_io(dags_folder):
    """Parsing every DAG file in a process where network I/O, database connections, Variables and
    Connections all raise must still give every DAG (guide: no I/O at parse time)."""
    code = (
        "import socket, sys, runpy\n"
        f"sys.path[:0] = [{str(ROOT / 'include')!r}, {str(ROOT / 'plugins')!r}]\n"
        "def refuse(*a, **k):\n"
        "    raise RuntimeError('I/O at DAG parse time')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import psycopg2\n"
        "psycopg2.connect = refuse\n"
        "from airflow.sdk import BaseHook, Variable\n"
        "BaseHook.get_connection = classmethod(refuse)\n"
        "Variable.get = staticmethod(refuse)\n"
        "ids = []\n"
        f"for f in {sorted(str(p) for p in dags_folder.glob('*.py'))!r}:\n"
        "    ns = runpy.run_path(f)\n"
        "    ids += [v.dag_id for v in ns.values() if type(v).__name__ == 'DAG']\n"
        "print('DAGS=' + ','.join(sorted(ids)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("DAGS=")][-1]
    from airtrain.spec import load_specs

    want = sorted(i for s in load_specs() for i in (s.retrain_dag_id, s.monitor_dag_id))
    assert line == "DAGS=" + ",".join(want)


def test_core_never_imports_airflow():
    """include/airtrain is the pure core: no module may import airflow."""
    offenders = []
    for path in (ROOT / "include" / "airtrain").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "airflow" or n.startswith("airflow.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_core_importable_without_airflow():
    """Belt and braces: import every core module in a process where `airflow` cannot be imported.
    (``airtrain.preload`` only imports the ML libraries for the fork server — ~11 s of CPU for GX and
    Evidently — and is covered by the AST check above.)"""
    mods = sorted(p.stem for p in (ROOT / "include" / "airtrain").glob("*.py") if p.stem not in ("__init__", "preload"))
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'airflow' or name.startswith('airflow.'):\n"
        "            raise ImportError('airflow is forbidden in the core')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(ROOT / 'include')!r})\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module('airtrain.' + m)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_task_sdk_imports_only(dags_folder):
    """DAG files (and the factory that builds their DAGs) import Airflow through the Task SDK
    (`airflow.sdk`), not legacy modules."""
    for path in [*dags_folder.glob("*.py"), ROOT / "plugins/airtrain_airflow/factory.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("airflow"):
                assert node.module.startswith(("airflow.sdk", "airflow.providers")), (path.name, node.module)
