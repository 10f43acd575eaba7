"""Hostile params, secrets and telemetry, with real DAG runs on a real warehouse."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.integration.dagtest import ROOT, Project, fetch, land_days, module_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 9, 1)
DAYS = 12
INJECTION = "x'); DROP TABLE registry.champions; --"


@pytest.fixture(scope="module")
def ran(tmp_path_factory, pg_server, airflow_db):
    """One retrain range run and one monitor run; everything they wrote is scanned below."""
    from airtrain_airflow.factory import build_monitor_dag

    p, mp = module_project(tmp_path_factory, pg_server, "sec", {
        "training": {"min_rows": 500, "window_days": 10, "holdout_days": 2},
        "schedule": {"retry_delay_minutes": 0.01}})
    land_days(p, START, DAYS)
    last = START + dt.timedelta(days=DAYS - 1)
    with captured_output(p.root / "runs.log"):  # everything the runs print: task logs, warnings, errors
        # the reason carries an injection attempt: it must be stored verbatim, as a bound value
        r1, s1 = p.run({"date": str(START), "end_date": str(last)})
        assert s1["promote"] == "success", s1
        # an older date, forced: the reason (with an injection attempt) goes into the promotion log
        r2, s2 = p.run({"date": str(START + dt.timedelta(days=8)), "force_promote": True, "reason": INJECTION})
        m1 = build_monitor_dag(p.spec()).test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(last)})
    yield p, [r1, r2, m1], s2
    mp.undo()


@contextlib.contextmanager
def captured_output(path):
    """Everything this process prints meanwhile goes to ``path``: file descriptors 1 and 2,
    ``sys.stdout``/``sys.stderr`` and every logging stream handler (Airflow's task logs included)."""
    import logging

    # one entry per handler (a handler attached to two loggers must be swapped once, or the second
    # swap would record the file as its "original" stream and restore pytest's handler to None)
    handlers = list({id(h): h for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
                     for h in getattr(lg, "handlers", []) if isinstance(h, logging.StreamHandler)
                     and not isinstance(h, logging.FileHandler) and "stream" in vars(h)}.values())
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = [os.dup(1), os.dup(2)]
    saved_sys = (sys.stdout, sys.stderr)
    with open(path, "w", buffering=1) as fh:
        saved_streams = [h.stream for h in handlers]
        for h in handlers:
            h.setStream(fh)
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        sys.stdout = sys.stderr = fh
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved_sys
            for h, s in zip(handlers, saved_streams, strict=True):
                h.setStream(s)
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)


def _password(p: Project) -> str:
    pw = urlsplit(p.warehouse.uri).password
    assert pw and len(pw) >= 8
    return pw


def test_values_are_bound_never_spliced(ran):
    p, runs, states = ran
    assert states["promote"] == "success"
    assert fetch(p.warehouse, "SELECT count(*) FROM registry.champions") == [(1,)]
    assert fetch(p.warehouse, "SELECT action FROM registry.promotion_log ORDER BY id") == [("promote",),
                                                                                           ("force_promote",)]
    reasons = [r[0] for r in fetch(p.warehouse, "SELECT reason FROM registry.promotion_log")]
    assert any(INJECTION in r for r in reasons), reasons


@pytest.mark.parametrize("dag_kind, conf", [
    ("retrain", {"date": "2026-01-01'; DROP TABLE registry.champions; --"}),
    ("retrain", {"end_date": "2026-01-01 OR 1=1"}),
    ("retrain", {"rollback_version": "1; DROP TABLE x"}),
    ("retrain", {"drift_report_id": "../../etc/passwd"}),
    ("retrain", {"reason": "x" * 501}),
    ("monitor", {"date": "2026-01-01; DELETE FROM monitoring.drift_decisions"}),
])
def test_hostile_run_params_are_refused_before_any_task(ran, dag_kind, conf):
    from airflow.sdk.exceptions import ParamValidationError
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag

    p = ran[0]
    dag = (build_retrain_dag if dag_kind == "retrain" else build_monitor_dag)(p.spec())
    with pytest.raises(ParamValidationError):
        dag.params.update(conf)
        dag.params.validate()


def test_no_secret_in_logs_xcoms_or_reports(ran, capfd):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    p, runs, _ = ran
    secret = _password(p)
    logged = (p.root / "runs.log").read_text(errors="replace")
    # the capture really holds the runs' logs (task by task), and no password appears in them
    assert all(f"task_id={t}" in logged or t in logged for t in ("ingest", "validate", "drift_check"))
    assert len(logged) > 10_000 and secret not in logged
    out, err = capfd.readouterr()
    assert secret not in out + err
    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.run_id.in_([r.run_id for r in runs])).all()
        values = [json.dumps(x.value, default=str) for x in rows]
    assert len(values) >= 10
    assert not [v for v in values if secret in v]
    assert max(len(v.encode()) for v in values) < 64 * 1024  # XComs stay small: data lives in the warehouse
    reports = [f for f in (p.root / "reports").rglob("*") if f.is_file()]
    assert any(f.suffix == ".html" and "drift" in f.parts for f in reports)
    assert not [f for f in reports if secret.encode() in f.read_bytes()]
    for table in ("registry.model_versions", "registry.promotion_log", "monitoring.drift_decisions",
                  "monitoring.validation_runs"):
        assert not fetch(p.warehouse, f"SELECT 1 FROM {table} t WHERE t::text LIKE %s", (f"%{secret}%",))


def test_the_warehouse_repr_never_shows_the_password(ran):
    p = ran[0]
    assert _password(p) not in repr(p.warehouse) and "***" in repr(p.warehouse)


def test_no_credentials_are_committed():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    uri = re.compile(r"postgres(?:ql)?(?:\+\w+)?://([^:/@\s'\"]+):([^@\s'\"]+)@")
    allowed = {"***", "pw", "password"}
    hits = []
    for f in files:
        path = ROOT / f
        if not path.is_file() or path.suffix in {".png", ".parquet"}:
            continue
        for m in uri.finditer(path.read_text(errors="ignore")):
            pw = m.group(2)
            user_is_a_variable = m.group(1).startswith("${")  # compose: ${POSTGRES_USER:-airflow}@host, no password
            if pw not in allowed and not pw.startswith(("${", "$", "<", "{")) and not user_is_a_variable:
                hits.append((f, m.group(0)))
    assert hits == []
    env_example = (ROOT / ".env.example").read_text()
    assert re.search(r"^AIRFLOW_CONN_WAREHOUSE=", env_example, re.M) or "AIRFLOW_CONN_" in env_example
    for spec in (ROOT / "include/pipelines").glob("*.yaml"):
        assert "://" not in spec.read_text(), f"{spec}: specs name a connection id, never a URI"


def test_gx_and_evidently_telemetry_are_off_in_a_fresh_process(tmp_path):
    code = """
import os, sys, datetime as dt
for k in ("GX_ANALYTICS_ENABLED", "DO_NOT_TRACK", "EVIDENTLY_DISABLE_TELEMETRY"):
    os.environ.pop(k, None)
sys.path.insert(0, "include")
import numpy as np, pandas as pd
from airtrain.spec import load_spec
from airtrain import simulate
from airtrain.data import validation
from airtrain.monitoring import drift
spec = load_spec("include/pipelines/churn.yaml")
d = dt.date(2026, 1, 1)
raw = simulate.simulate_day(d, rows=200)[0].astype(str)
validation.validate_batch(raw, spec, d, "t", today=d)
rng = np.random.default_rng(0)
ref = pd.DataFrame({"a": rng.normal(size=300)}); cur = pd.DataFrame({"a": rng.normal(size=300)})
drift.evidently_drift(ref, cur, [drift.ColumnRule("a", "numerical", "psi", 0.2)], 0.5)
import great_expectations as gx
from evidently import telemetry
print("GX", os.environ.get("GX_ANALYTICS_ENABLED"), gx.get_context(mode="ephemeral").config.analytics_enabled)
print("EVIDENTLY", telemetry.event_logger.enabled())
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines() if line.startswith(("GX", "EVID")))
    assert lines["GX"].split()[0] == "False" and lines["GX"].split()[1] in ("False", "None")
    assert lines["EVIDENTLY"] == "False"
