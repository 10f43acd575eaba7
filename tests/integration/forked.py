"""Run a DAG run in a process forked from the (warm) test process.

A fresh interpreter pays ~10 s to import Airflow, scikit-learn, GX and Evidently before it does any
work; a fork of the test process has them already. The child runs a real ``dag.test()`` against the
same Airflow metadata database (Airflow's at-fork hook gives the child its own connection pool) and
the same warehouse, so it can be killed at a failpoint (``os._exit(137)``, like ``kill -9``) or run
at the same time as other children (concurrency tests).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ChildResult:
    exitcode: int | None
    state: str | None  # the DAG run's state, when the child got that far
    stderr: str
    tasks: dict[str, Any]


def _child(spec_path: str, conf: dict[str, Any], env: dict[str, str], out_path: str, kind: str) -> None:
    err = os.open(out_path + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(err, 2)  # keep the child's stderr (failpoint messages, tracebacks) for the test
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - pytest's capture object is the parent's
    import faulthandler

    faulthandler.dump_traceback_later(60, repeat=True)  # a hung child shows where it hangs
    os.environ.update(env)
    # dag.test() talks to an in-process execution API whose event loop runs in a thread of the
    # parent; threads do not survive a fork, so the child builds its own
    from airflow.sdk.execution_time import supervisor

    supervisor.in_process_api_server.cache_clear()
    from airtrain.spec import load_spec
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag

    build = build_monitor_dag if kind == "monitor" else build_retrain_dag
    dr = build(load_spec(spec_path)).test(logical_date=dt.datetime.now(dt.UTC), run_conf=conf)
    tasks: dict[str, Any] = {}
    for ti in dr.get_task_instances():
        tasks.setdefault(ti.task_id, []).append([str(ti.state), ti.try_number])
    Path(out_path).write_text(json.dumps({"state": str(dr.state), "tasks": tasks}))
    sys.stderr.flush()


def start(spec_path: Path, conf: dict[str, Any], *, env: dict[str, str] | None = None,
          kind: str = "retrain") -> tuple[multiprocessing.Process, str]:
    """Fork a child that runs one DAG run; returns (process, result path)."""
    from airflow import settings

    settings.Session.remove()  # no session (and no checked-out connection) crosses the fork
    fd, out_path = tempfile.mkstemp(prefix="airtrain-child-", suffix=".json")
    os.close(fd)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_child, args=(str(spec_path), conf, env or {}, out_path, kind), daemon=False)
    proc.start()
    return proc, out_path


def wait(proc: multiprocessing.Process, out_path: str, timeout: float = 600) -> ChildResult:
    proc.join(timeout)
    if proc.is_alive():
        err = Path(out_path + ".err")
        sys.stderr.write(err.read_text(errors="replace")[-30000:] if err.exists() else "")
        proc.kill()
        proc.join()
        raise TimeoutError(f"the forked DAG run did not finish in {timeout} s")
    err_path = Path(out_path + ".err")
    stderr = err_path.read_text(errors="replace") if err_path.exists() else ""
    text = Path(out_path).read_text() if Path(out_path).exists() else ""
    data = json.loads(text) if text.strip() else {}
    for p in (Path(out_path), err_path):
        p.unlink(missing_ok=True)
    return ChildResult(proc.exitcode, data.get("state"), stderr, data.get("tasks", {}))


def run(spec_path: Path, conf: dict[str, Any], *, env: dict[str, str] | None = None, kind: str = "retrain",
        timeout: float = 600) -> ChildResult:
    """One DAG run in a forked child, waited for."""
    proc, out = start(spec_path, conf, env=env, kind=kind)
    return wait(proc, out, timeout)
