"""The local stack of `make run` itself (scripts/devstack.py), driven like a user and an operator would.

Slow (about 5-8 minutes on 2 cores): marked ``e2e`` and run by ``make test-e2e`` or ``make test-stack``,
not by ``make test``. It starts its OWN copy of the stack - its own state folder, .env, data folder
and free ports - so it never touches a `make run` that is up, and stops it at the end.

One stack for the module; the tests run in order on it:

1. startup - the API server answers before any task runs, so no task fails on its first try (the
   old startup race failed the first scheduled run with ``Connection refused``); every Airflow
   listener is on 127.0.0.1; the demo's bootstrap run is the first retrain run and makes the
   first champion and predictions, before the backfill and the scheduled run;
2. a PostgreSQL restart while a run is writing: the components that die are restarted by the
   supervisor, their heartbeats come back, and the run in flight finishes successfully;
3. `down` stops every process it started.

The seconds it measures are printed (``-s``) and written to ``.local/stack-test.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMO_DAYS = 50  # the bootstrap needs 44 (label delay 30 + 14 labeled days); the backfill does the rest


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.local, self.data, self.env_file = base / "local", base / "project", base / "stack.env"
        self.pg_port, self.port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.figures: dict[str, float | str] = {}
        self.token: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "AIRTRAIN_LOCAL_DIR": str(self.local), "AIRTRAIN_ENV_FILE": str(self.env_file),
                "AIRTRAIN_DATA_ROOT": str(self.data), "PYTHONWARNINGS": "ignore"}

    def devstack(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "scripts/devstack.py"), *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def cfg(self) -> dict[str, str]:
        sys.path.insert(0, str(ROOT / "scripts"))
        from devstack import parse_env

        return parse_env(self.env_file.read_text())

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.token is None:
            cfg = self.cfg()
            _, tok = self._call("POST", "/auth/token", {"username": "admin", "password": cfg["AIRFLOW_ADMIN_PASSWORD"]})
            self.token = tok["access_token"]
        return self._call(method, path, body)

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:
            return 0, {}

    def runs(self) -> list[dict]:
        status, body = self.api("GET", "/api/v2/dags/churn_retrain/dagRuns?order_by=start_date&limit=100")
        return body.get("dag_runs", []) if status == 200 else []

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        status, body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances")
        return body.get("task_instances", []) if status == 200 else []

    def wait_run(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/api/v2/dags/churn_retrain/dagRuns/{urllib.parse.quote(run_id)}")
            if status == 200 and body.get("state") in ("success", "failed"):
                return body["state"]
            time.sleep(3)
        return "timeout"

    def pids(self) -> dict[str, int | None]:
        run = self.local / "run"
        out = {}
        for name in ("supervisor", "api-server", "dag-processor", "scheduler", "triggerer"):
            f = run / f"{name}.pid"
            pid = int(f.read_text()) if f.exists() else None
            out[name] = pid if pid and psutil.pid_exists(pid) else None
        return out

    def postgres(self):
        sys.path.insert(0, str(ROOT / "include"))
        from airtrain_dev.localpg import LocalPostgres

        return LocalPostgres(self.local / "pgdata", self.pg_port, self.cfg()["LOCAL_PG_PASSWORD"])

    def warehouse_query(self, sql: str) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(self.postgres().url("warehouse"))
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def stack():
    # not under pytest's tmp folder: a new pytest session elsewhere resets /tmp/pytest-of-<user> to
    # 0700, and the embedded PostgreSQL runs as another user when the tests run as root
    base = Path(tempfile.mkdtemp(prefix="airtrain-stack-test-"))
    base.chmod(0o755)
    s = Stack(base)
    s.env_file.write_text(f"LOCAL_PG_PORT={s.pg_port}\nAIRFLOW_PORT={s.port}\nDEMO_DAYS={DEMO_DAYS}\n")
    t0 = time.monotonic()
    up = s.devstack("up")
    s.figures["up_seconds"] = round(time.monotonic() - t0, 1)
    s.up_output = up.stdout + up.stderr
    s.started = t0
    try:
        assert up.returncode == 0, s.up_output[-3000:]
        yield s
    finally:
        down = s.devstack("down", timeout=180)
        s.down_output = down.stdout + down.stderr
        print("\nstack test figures:", json.dumps(s.figures))
        out = ROOT / ".local" / "stack-test.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(s.figures, indent=2) + "\n")
        shutil.rmtree(base, ignore_errors=True)


def test_startup_api_first_loopback_only_and_the_bootstrap_makes_the_first_champion(stack):
    # every Airflow listener (API server, and no log or health servers) is on the loopback interface
    listeners = []
    for name, pid in stack.pids().items():
        assert pid, (name, stack.pids())
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            try:
                listeners += [(name, c.laddr.ip, c.laddr.port) for c in p.net_connections("inet")
                              if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                continue
    assert (("api-server", "127.0.0.1", stack.port) in listeners), listeners
    assert all(ip in ("127.0.0.1", "::1") for _, ip, _ in listeners), listeners
    # the demo's runs were queued before the DAGs were unpaused and run first: bootstrap, then backfill
    runs = stack.runs()
    ids = [r["dag_run_id"] for r in runs]
    boot = next(r for r in ids if r.startswith("demo_bootstrap__"))
    assert stack.wait_run(boot, 600) == "success", stack.task_instances("churn_retrain", boot)
    champion_at = time.monotonic()
    runs = stack.runs()
    started = sorted((r for r in runs if r.get("start_date")), key=lambda r: r["start_date"])
    assert started[0]["dag_run_id"] == boot, [(r["dag_run_id"], r["start_date"]) for r in started]
    champion = stack.warehouse_query("SELECT c.version, m.run_id FROM registry.champions c JOIN "
                                     "registry.model_versions m USING (pipeline, version) WHERE pipeline = 'churn'")
    assert champion == [(1, boot)]
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert stack.warehouse_query(f"SELECT count(*) FROM predictions.churn_latest WHERE as_of_date = "  # noqa: S608
                                 f"DATE '{yesterday}'")[0][0] == 2000
    stack.figures["first_champion_and_predictions_seconds_after_up_returned"] = round(
        champion_at - stack.started - stack.figures["up_seconds"], 1)
    stack.figures["first_champion_and_predictions_seconds_after_make_run"] = round(champion_at - stack.started, 1)
    # no task of any run so far failed or needed a second try (the startup race failed them with
    # "Connection refused" when the scheduler started tasks before the API server was up)
    for dag_id, run_ids in (("churn_retrain", [r["dag_run_id"] for r in runs]),):
        for run_id in run_ids:
            for ti in stack.task_instances(dag_id, run_id):
                assert ti["state"] != "failed" and ti["try_number"] <= 1, (run_id, ti["task_id"], ti["state"],
                                                                            ti["try_number"])
    status, body = stack.api("GET", "/api/v2/dags/churn_monitor/dagRuns")
    for r in body.get("dag_runs", []):
        for ti in stack.task_instances("churn_monitor", r["dag_run_id"]):
            assert ti["try_number"] <= 1 and ti["state"] != "failed", (r["dag_run_id"], ti)


def heartbeats(stack: Stack) -> dict[str, dt.datetime | None]:
    status, body = stack.api("GET", "/api/v2/monitor/health")
    out = {}
    for name in ("scheduler", "triggerer", "dag_processor"):
        value = (body.get(name) or {}).get(f"latest_{name}_heartbeat") if status == 200 else None
        out[name] = dt.datetime.fromisoformat(value) if value else None
    return out


def test_a_postgres_restart_is_survived(stack):
    # a run that is writing when the database goes away: the demo's backfill (running right after the
    # bootstrap), else a retrain of the last 30 days
    in_flight = [r["dag_run_id"] for r in stack.runs() if r["state"] == "running"]
    if in_flight:
        victim = in_flight[0]
    else:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        victim = "stack_test__postgres_restart"
        status, _ = stack.api("POST", "/api/v2/dags/churn_retrain/dagRuns", {
            "dag_run_id": victim, "logical_date": None, "conf": {
                "date": str(yesterday - dt.timedelta(days=29)), "end_date": str(yesterday), "force_train": True}})
        assert status in (200, 201), status
    stack.figures["run_in_flight"] = victim
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not any(
            ti["state"] == "running" and ti["task_id"] in ("ingest", "validate", "train", "evaluate")
            for ti in stack.task_instances("churn_retrain", victim)):
        time.sleep(2)
    before = stack.pids()
    pg = stack.postgres()
    t0 = time.monotonic()
    pg.stop()
    time.sleep(4)
    pg.start()
    back = time.monotonic()
    stack.figures["postgres_down_seconds"] = round(back - t0, 1)
    up_again = dt.datetime.now(dt.UTC)
    # every component runs again, and the ones that died were restarted by the supervisor
    deadline = time.monotonic() + 600
    beats = heartbeats(stack)
    while time.monotonic() < deadline:
        beats = heartbeats(stack)
        if all(b is not None and b > up_again for b in beats.values()) and all(stack.pids().values()):
            break
        time.sleep(2)
    stack.figures["components_healthy_seconds_after_postgres_is_back"] = round(time.monotonic() - back, 1)
    after = stack.pids()
    assert all(after.values()), after
    assert all(b is not None and b > up_again for b in beats.values()), beats
    assert after["supervisor"] == before["supervisor"] and after["api-server"] == before["api-server"]
    restarted = sorted(n for n in ("dag-processor", "scheduler", "triggerer") if after[n] != before[n])
    stack.figures["restarted_by_the_supervisor"] = ",".join(restarted)
    log = (stack.local / "logs/supervisor.log").read_text()
    for name in restarted:
        assert f"airflow {name} exited" in log, log[-2000:]
    # the run that was in flight finishes, and so does everything queued behind it
    assert stack.wait_run(victim, 900) == "success", stack.task_instances("churn_retrain", victim)
    stack.figures["run_in_flight_succeeded_seconds_after_postgres_is_back"] = round(time.monotonic() - back, 1)
    from airtrain import invariants
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    wh = Warehouse(stack.postgres().url("warehouse"))
    assert invariants.check(wh, load_spec(ROOT / "include/pipelines/churn.yaml")) == []


def test_down_stops_everything_it_started(stack):
    pids = [p for p in stack.pids().values() if p]
    children = []
    for pid in pids:
        try:
            children += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            pass
    down = stack.devstack("down", timeout=180)
    assert down.returncode == 0, down.stderr
    time.sleep(1)
    alive = [p for p in pids + children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], alive
    assert not stack.postgres().running()
    for port in (stack.port, stack.pg_port):
        with pytest.raises(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=1).close()
