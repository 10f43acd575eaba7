"""A seeded chaos soak through the real scheduler (issue 23): `make soak SEED=1 DAYS=30`.

On its OWN copy of the local stack (scripts/devstack.py: embedded PostgreSQL, Airflow 3 LocalExecutor
under the supervisor, free ports, its own folders; never a `make run` that is up), it runs a backfill
of DAYS simulated days, day by day, with covariate drift part-way (simulate's ``covariate_drift``
from simulation day 20), so the month holds daily scoring runs, drift-triggered retrains, their
approval (answered through the REST API, as a person would) and a canary (``rollout.strategy:
canary``) that graduates or aborts. Meanwhile a **seeded fault injector** acts at random moments
(a Poisson process: its arrival times are uniform over the wall time), each recorded with the task
instances running at that moment:

* ``kill9_task``: ``kill -9`` of a running task process (``task_instance.pid``);
* ``pg_restart_fast`` / ``pg_restart_immediate``: PostgreSQL stopped (``pg_ctl -m fast|immediate``)
  for 1-5 s, then started;
* ``restart_scheduler`` / ``restart_api_server`` / ``restart_triggerer``: the component is stopped
  (SIGTERM, as an operator's restart); the supervisor starts it again;
* ``manual_same_date`` / ``manual_neighbour_date``: a manual run of the date being run, or of the
  day before, started through the REST API while the day's run is in flight;
* ``long_reader``: a transaction reading ``predictions.<name>`` held open 10-40 s (across a publish);

and, between runs (seeded per day): ``half_landing_file`` (the day's file lands in place in two
halves; the spec's ``source.ready_marker`` comes after the second: the first half must never be
ingested as the day) and ``corrupt_artifact`` (the champion's artifact in the registry is altered:
the run must refuse it - a permanent fault, the run fails without scoring - and, once the artifact is
restored and the run cleared, succeed).

**Celery variant** (``make soak EXECUTOR=celery DAYS=5``): the same on the Celery copy of the stack (two
workers, Redis broker, S3 object store), plus, on each day (``--p-worker-kill``), ``kill_worker``: while
one of the day's scoring shards runs, its whole worker (the process tree: the Celery worker, its pool,
the task supervisor and the task) is killed with SIGKILL, as a lost host would be, and kept down (the
supervisor's ``.local/run/worker-<name>.hold``) until Airflow has noticed the lost heartbeat, failed
that try and run the shard's next try on the other worker; then the worker is let back. The oracle also
checks that each killed shard ended in success on the other worker. The stack's
``[scheduler] task_instance_heartbeat_timeout`` is 60 s here (Airflow's default, 300 s, would make each
kill cost five minutes of waiting).

**The oracle**, after every day and at the end: :func:`airtrain.invariants.check` (one champion, one
prediction per entity and date, no orphan stage table, one retrain per drift window, the promotion
log a chain ending at the champion, lineage...), and per date the md5 of the predictions partition
(every column but ``run_id`` and ``scored_at``) equal to a **fault-free run of the same seed**
(``--faults off``, cached in ``.local/soak/reference-<seed>-<days>.json``; `make soak` runs it first
when it is missing). Rows lost / doubled per date against the reference. Figures and the fault log:
``.local/soak/soak-<seed>-<days>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "include"), str(ROOT / "dev")]
OUT = ROOT / ".local" / "soak"

DAG, MONITOR = "churn_retrain", "churn_monitor"
START = dt.date(2026, 6, 1)  # the simulation's first day (fixed: the reference and the soak see the same dates)
HISTORY = 12  # days before the soak: the bootstrap trains the first champion on them
ROWS = 600
DRIFT_START = 20  # simulation day index from which covariate drift applies (ramping over 3 days)
RETRIES = 4  # the soak spec's schedule.retries: 5 tries per task instance
KILL_MAX_TRY = RETRIES - 1  # kill -9 hits tries 1..3 of a task instance, never its last two
SPEC_OVERRIDES: dict[str, Any] = {
    "source": {"ready_marker": "{date}.csv.ready"},
    "target": {"label_delay_days": 1},
    "training": {"cadence": "on_trigger", "min_rows": 500, "window_days": 10, "holdout_days": 2},
    "explain": {"importance": False},
    "fairness": None,
    "scoring": {"shadow": False, "partitions": 2},
    "promotion": {"approval": "required", "approval_timeout_hours": 20},
    "rollout": {"strategy": "canary", "canary_fraction": 0.3, "min_labeled": 200, "max_days": 6},
    "monitoring": {"trigger": {"persistence": 2, "cooldown_days": 7}},
    # no scheduled run: only the runs the soak starts; quick retries (a fault is retried like in production)
    "schedule": {"start_paused": True, "start_date": "2099-01-01", "retries": RETRIES, "retry_delay_minutes": 0.05,
                 "max_active_runs": 4},
}
TIME_FAULTS = {  # kind: weight (the injector's random choice). A component or PostgreSQL restart costs the
    # stack 30-90 s of recovery on 2 shared cores and a manual run a whole run: weighted so the days still advance
    "kill9_task": 40, "pg_restart_fast": 3, "pg_restart_immediate": 3, "restart_scheduler": 3,
    "restart_api_server": 3, "restart_triggerer": 3, "manual_same_date": 3, "manual_neighbour_date": 3,
    "long_reader": 25,
}
#: faults after which a run failing (after its retries, or at once) is expected: they cannot heal by retrying
PERMANENT = {"corrupt_artifact"}
PRED_EXCLUDED = {"run_id", "scored_at"}
LANDING_PATH = "data/landing/churn"  # the churn spec's source.path, under the landing root
#: the Celery variant: a lost worker's task is failed (then retried) once its heartbeat is this old
CELERY_HEARTBEAT_TIMEOUT_S = 60


def say(msg: str) -> None:
    print(f"[soak {dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """A throw-away copy of the local stack in ``base`` (own ports, folders, PostgreSQL)."""

    def __init__(self, base: Path, executor: str) -> None:
        self.base, self.local, self.env_file = base, base / "local", base / "stack.env"
        self.spec_dir, self.project = base / "pipelines", base / "project"
        self.landing = self.project / LANDING_PATH
        self.staging = base / "staging"
        self.pg_port, self.ui_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.ui_port}"
        self.token: str | None = None
        self.executor = executor
        lines = [f"LOCAL_PG_PORT={self.pg_port}", f"AIRFLOW_PORT={self.ui_port}", "DEMO_DAYS=0",
                 f"AIRTRAIN_SPEC_DIR={self.spec_dir}"]
        if executor == "celery":
            lines += ["AIRTRAIN_EXECUTOR=celery", f"CELERY_BROKER_PORT={free_port()}", f"OBJSTORE_PORT={free_port()}",
                      f"WORKER_LOG_PORT={free_port()}", "CELERY_WORKERS=2",
                      f"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT={CELERY_HEARTBEAT_TIMEOUT_S}"]
        self.env_file.write_text("\n".join(lines) + "\n")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "AIRTRAIN_LOCAL_DIR": str(self.local), "AIRTRAIN_ENV_FILE": str(self.env_file),
                "AIRTRAIN_DATA_ROOT": str(self.project), "AIRTRAIN_SPEC_DIR": str(self.spec_dir),
                "PYTHONWARNINGS": "ignore"}

    def devstack(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "scripts/devstack.py"), *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def cfg(self) -> dict[str, str]:
        from devstack import parse_env

        return parse_env(self.env_file.read_text())

    def postgres(self):
        from airtrain_dev.localpg import LocalPostgres

        return LocalPostgres(self.local / "pgdata", self.pg_port, self.cfg()["LOCAL_PG_PASSWORD"])

    def url_of(self, db: str) -> str:
        return self.postgres().url(db)

    def query(self, db: str, sql: str, params: tuple = (), retries: int = 60) -> list[tuple]:
        """A query that waits out a PostgreSQL restart (the soak's own reads must not fail on a fault)."""
        import psycopg2

        for attempt in range(retries):
            try:
                conn = psycopg2.connect(self.url_of(db), connect_timeout=5)
                try:
                    with conn, conn.cursor() as cur:
                        cur.execute(sql, params)
                        return cur.fetchall() if cur.description else []
                finally:
                    conn.close()
            except psycopg2.OperationalError:
                if attempt == retries - 1:
                    raise
                time.sleep(1)
        return []

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        for _ in range(60):  # the API server may be restarting (a fault): wait for it
            if self.token is None:
                status, tok = self._call("POST", "/auth/token",
                                         {"username": "admin", "password": self.cfg()["AIRFLOW_ADMIN_PASSWORD"]})
                if status not in (200, 201):
                    time.sleep(2)
                    continue
                self.token = tok["access_token"]
            status, out = self._call(method, path, body)
            if status == 401:
                self.token = None
                continue
            if status in (0, 502, 503):
                time.sleep(2)
                continue
            return status, out
        return 0, {"error": "the API server did not answer"}

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {"error": exc.read()[:500].decode(errors="replace")}
        except OSError as exc:
            return 0, {"error": str(exc)}

    def put_landing(self, name: str, data: bytes) -> None:
        """A landing object as an upstream system delivers it: into the local folder by write-then-rename
        (LocalExecutor stack), or into the S3 bucket (the Celery stack's AIRTRAIN_LANDING_URL; one PUT:
        an object appears whole, or replaces the one before whole)."""
        if self.executor == "celery":
            import boto3
            from airtrain_dev import s3server
            from devstack import LOCAL_BUCKET, s3_endpoint

            client = boto3.client("s3", endpoint_url=s3_endpoint(self.cfg()), aws_access_key_id=s3server.ACCESS_KEY,
                                  aws_secret_access_key=s3server.SECRET_KEY, region_name=s3server.REGION)
            client.put_object(Bucket=LOCAL_BUCKET, Key=f"airtrain/{LANDING_PATH}/{name}", Body=data)
            return
        self.landing.mkdir(parents=True, exist_ok=True)
        tmp = self.landing / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.landing / name)

    def pid(self, name: str) -> int | None:
        f = self.local / "run" / f"{name}.pid"
        try:
            return int(f.read_text())
        except (OSError, ValueError):
            return None


# ------------------------------------------------------------------------------------------- setup


def write_spec(stack: Stack) -> None:
    from airtrain_dev.demo import write_demo_spec

    spec = write_demo_spec(ROOT / "include/pipelines/churn.yaml", stack.spec_dir, SPEC_OVERRIDES)
    import yaml

    data = yaml.safe_load(spec.read_text())
    data["scoring"].pop("rows_per_shard", None)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    from airtrain.spec import load_spec

    load_spec(spec)  # a spec error fails here, not as a DAG import error minutes later


def simulate(stack: Stack, seed: int, days: int) -> None:
    """Every day's landing file into a staging folder (delivered one day at a time, like an upstream
    system), labels into the warehouse (known label_delay_days later)."""
    stack.staging.mkdir(parents=True, exist_ok=True)
    code = ("import sys, datetime as dt\n"
            "from airtrain import simulate as s\n"
            "from airtrain.warehouse.connection import Warehouse\n"
            "import os\n"
            "seed, days, rows, drift, start = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), "
            "dt.date.fromisoformat(sys.argv[5])\n"
            "sc = s.Scenario('soak', drift='covariate', drift_start=drift)\n"
            "wh = Warehouse(os.environ['WAREHOUSE_URL'])\n"
            "for i in range(days):\n"
            "    d = start + dt.timedelta(days=i)\n"
            "    f, lab = s.simulate_day(d, scenario=sc, seed=seed, rows=rows, start=start, label_delay_days=1)\n"
            "    s.load_labels(wh, lab)\n"
            "    f.to_csv(sys.argv[6] + f'/{d}.csv', index=False)\n")
    subprocess.run([sys.executable, "-c", code, str(seed), str(HISTORY + days), str(ROWS), str(DRIFT_START),
                    START.isoformat(), str(stack.staging)], check=True, cwd=ROOT,
                   env={**stack.env, "WAREHOUSE_URL": stack.url_of("warehouse"),
                        "PYTHONPATH": str(ROOT / "include")})


def deliver(stack: Stack, d: dt.date, halves: bool = False, between: Any = None) -> None:
    """The day's landing file, then its ready marker (sha256sum line). ``halves``: the file is written in
    place in two parts, ``between()`` runs after the first (the run is then already waiting); in the
    Celery stack's bucket, the first half is an object the whole file replaces later."""
    data = (stack.staging / f"{d}.csv").read_bytes()
    if halves:
        cut = data.index(b"\n", len(data) // 2) + 1
        if stack.executor == "celery":
            stack.put_landing(f"{d}.csv", data[:cut])
            if between:
                between()
            stack.put_landing(f"{d}.csv", data)
        else:
            stack.landing.mkdir(parents=True, exist_ok=True)
            with open(stack.landing / f"{d}.csv", "wb") as f:
                f.write(data[:cut])
                f.flush()
                os.fsync(f.fileno())
                if between:
                    between()
                f.write(data[cut:])
    else:
        stack.put_landing(f"{d}.csv", data)
    stack.put_landing(f"{d}.csv.ready", f"{hashlib.sha256(data).hexdigest()}  {d}.csv\n".encode())


# ------------------------------------------------------------------------------------------- runs


def trigger(stack: Stack, run_id: str, conf: dict, note: str = "") -> int:
    status, body = stack.api("POST", f"/api/v2/dags/{DAG}/dagRuns",
                             {"dag_run_id": run_id, "logical_date": None, "conf": conf, "note": note or run_id})
    if status not in (200, 201, 409):
        raise RuntimeError(f"could not trigger {run_id}: {status} {body}")
    return status


def run_state(stack: Stack, run_id: str, dag: str = DAG) -> str | None:
    rows = stack.query("airflow", "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag, run_id))
    return rows[0][0] if rows else None


def answer_approvals(stack: Stack, log: list[dict]) -> None:
    """Approve every pending approval request through the REST API (HITL), as the approver would."""
    pending = stack.query("airflow", "SELECT dag_id, run_id, task_id, map_index FROM task_instance "
                                     "WHERE state = 'awaiting_input'")
    for dag_id, run_id, task_id, map_index in pending:
        path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/"
                f"{map_index}/hitlDetails")
        status, body = stack.api("PATCH", path, {"chosen_options": ["Approve"],
                                                 "params_input": {"comment": "soak: approved"}})
        log.append({"run_id": run_id, "task_id": task_id, "status": status, "at": time.time()})
        say(f"approval of {run_id}/{task_id} answered through the REST API: HTTP {status}")


def busy(stack: Stack) -> list[tuple[str, str, str]]:
    return stack.query("airflow", "SELECT dag_id, run_id, state FROM dag_run WHERE dag_id IN (%s, %s) AND state IN "
                                  "('queued', 'running')", (DAG, MONITOR))


def wait_quiet(stack: Stack, approvals: list[dict], timeout: float = 3600) -> list[tuple]:
    """Until no retrain or monitor run is queued or running for 3 polls in a row (a monitor run follows a
    publish a moment later), answering approvals meanwhile. Returns what was still busy at the timeout."""
    deadline, quiet = time.monotonic() + timeout, 0
    left: list[tuple] = []
    while time.monotonic() < deadline:
        answer_approvals(stack, approvals)
        left = busy(stack)
        quiet = quiet + 1 if not left else 0
        if quiet >= 3:
            return []
        time.sleep(3)
    return left


def task_log(stack: Stack, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """A try's log through the REST API (local files or the S3 bucket of the Celery stack alike)."""
    path = (f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/logs/{try_number}"
            "?full_content=true" + (f"&map_index={map_index}" if map_index >= 0 else ""))
    status, body = stack.api("GET", path)
    return json.dumps(body) if status == 200 else ""


#: what a refused corrupted artifact leaves in the failed try's log (airtrain.model.artifacts)
REFUSED_ARTIFACT = "ArtifactIntegrityError"


def failure_cause(logs: list[str]) -> str:
    """Why a run failed, from the logs of its failed tries: the permanent fault when every one of them
    shows the corrupted artifact refused; anything else is a transient fault that outlived the retries."""
    if logs and all(REFUSED_ARTIFACT in text for text in logs):
        return "corrupt_artifact (permanent: refused)"
    return "transient fault(s): FAILED AFTER RETRIES"


def clear_failed(stack: Stack, run_id: str) -> None:
    status, body = stack.api("POST", f"/api/v2/dags/{DAG}/clearTaskInstances",
                             {"dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True, "dry_run": False,
                              "include_downstream": True})
    if status != 200:
        raise RuntimeError(f"could not clear {run_id}: {status} {body}")


# ------------------------------------------------------------------------------------------- faults


class Injector(threading.Thread):
    """Faults at the arrival times of a seeded Poisson process (uniform over the wall time)."""

    def __init__(self, stack: Stack, seed: int, mean_gap: float, state: dict) -> None:
        super().__init__(daemon=True)
        self.stack, self.rng, self.mean_gap, self.state = stack, random.Random(seed), mean_gap, state
        self.log: list[dict] = []
        self.stop_event = threading.Event()
        self.pause = threading.Lock()  # held by the main loop while it injects a between-runs fault
        self.n_manual = 0

    def running_tasks(self) -> list[tuple]:
        return self.stack.query("airflow", "SELECT dag_id, run_id, task_id, map_index, try_number, pid FROM "
                                           "task_instance WHERE state = 'running'")

    def run(self) -> None:
        while not self.stop_event.wait(self.rng.expovariate(1 / self.mean_gap)):
            kind = self.rng.choices(list(TIME_FAULTS), weights=list(TIME_FAULTS.values()))[0]
            with self.pause:
                try:
                    entry = self.inject(kind)
                except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is recorded, not fatal
                    entry = {"kind": kind, "skipped": f"{type(exc).__name__}: {exc}"[:300]}
            entry.update(at=round(time.time() - self.state["t0"], 1), day=str(self.state.get("day")))
            self.log.append(entry)
            say(f"fault {entry}")

    def inject(self, kind: str) -> dict:
        st, rng = self.stack, self.rng
        running = self.running_tasks()
        entry: dict[str, Any] = {"kind": kind, "running": [f"{r[1]}/{r[2]}[{r[3]}]#{r[4]}" for r in running]}
        if kind == "kill9_task":
            # a transient fault within the retry budget: a try is killed only while the task instance
            # keeps tries for the other faults (restarts also cost tries); more kills than retries is
            # a permanent fault by construction, which proves nothing about recovery
            def fair(r: tuple) -> bool:
                return bool(r[5]) and r[4] <= KILL_MAX_TRY

            victims = [r for r in running if fair(r)]
            deadline = time.monotonic() + 20  # between two tasks: the next one to start is the victim
            while not victims and time.monotonic() < deadline and not self.stop_event.is_set():
                time.sleep(0.5)
                running = self.running_tasks()
                victims = [r for r in running if fair(r)]
            entry["running"] = [f"{r[1]}/{r[2]}[{r[3]}]#{r[4]}" for r in running]
            if not victims:
                entry["skipped"] = "no task running below its kill budget"
                return entry
            v = rng.choice(victims)
            try:
                os.kill(v[5], signal.SIGKILL)
                entry["killed"] = f"{v[1]}/{v[2]}[{v[3]}]#{v[4]} pid {v[5]}"
            except ProcessLookupError:
                entry["skipped"] = f"pid {v[5]} gone"
        elif kind.startswith("pg_restart_"):
            from airtrain_dev.localpg import find_bindir

            pg = st.postgres()
            mode = kind.removeprefix("pg_restart_")
            down = rng.uniform(1, 5)
            pg._run([str(find_bindir() / "pg_ctl"), "-D", str(pg.data_dir), "-m", mode, "-w", "stop"], check=False)
            time.sleep(down)
            pg.start()
            entry["down_s"] = round(down, 1)
        elif kind.startswith("restart_"):
            name = kind.removeprefix("restart_").replace("_", "-")
            pid = st.pid(name)
            if not pid:
                entry["skipped"] = f"{name} not running"
                return entry
            try:
                os.kill(pid, signal.SIGTERM)
                entry["stopped"] = f"{name} pid {pid}"
            except ProcessLookupError:
                entry["skipped"] = f"{name} pid {pid} gone"
        elif kind in ("manual_same_date", "manual_neighbour_date"):
            day = self.state.get("day")
            if day is None:
                entry["skipped"] = "no day in flight"
                return entry
            # one manual run in flight at a time: each is a whole run, and when they arrive faster than the
            # stack (slowed by the other faults) finishes them, the day never gets quiet (seen at a fault
            # every 6-9 s: a day of 11 manual runs)
            in_flight = st.query("airflow", "SELECT count(*) FROM dag_run WHERE dag_id = %s AND run_id LIKE "
                                            "'soak\\_manual\\_\\_%%' AND state IN ('queued', 'running')", (DAG,))[0][0]
            if in_flight:
                entry["skipped"] = f"{in_flight} manual run(s) still in flight"
                return entry
            d = day if kind == "manual_same_date" else day - dt.timedelta(days=1)
            self.n_manual += 1
            run_id = f"soak_manual__{d}__{self.n_manual}"
            # the day's own run again (its conf, not a retrain request: a trigger_reason would make an
            # on_trigger pipeline train, a business event the fault-free run does not have)
            trigger(st, run_id, {"date": str(d)}, f"soak fault {kind}")
            entry["run_id"] = run_id
            self.state.setdefault("manual_runs", []).append(run_id)
        elif kind == "long_reader":
            hold = rng.uniform(10, 40)
            threading.Thread(target=self.reader, args=(hold,), daemon=True).start()
            entry["hold_s"] = round(hold, 1)
        return entry

    def reader(self, hold: float) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(self.stack.url_of("warehouse"), application_name="soak_long_reader")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM predictions.churn")
                    time.sleep(hold)  # the transaction (and its lock on every partition) stays open
                conn.rollback()
            finally:
                conn.close()
        except psycopg2.Error:
            pass  # a PostgreSQL restart ended it early


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and every descendant (a lost host: nothing gets to clean up). The pids killed."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    killed = []
    for p in procs:
        try:
            p.kill()
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return killed


class WorkerKiller(threading.Thread):
    """Celery: kill the whole worker running one of ``run_id``'s scoring shards, keep it down until the
    shard's next try runs (so: on the other worker), then let the supervisor start it again."""

    def __init__(self, stack: Stack, run_id: str, rng: random.Random, entry: dict, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stack, self.run_id, self.rng, self.entry, self.stop = stack, run_id, rng, entry, stop
        self.day_over = threading.Event()  # set by the day loop once the day's runs are quiet

    def shard(self, map_index: int) -> tuple | None:
        rows = self.stack.query("airflow", "SELECT try_number, hostname, state FROM task_instance WHERE dag_id = %s "
                                           "AND run_id = %s AND task_id = 'score' AND map_index = %s",
                                (DAG, self.run_id, map_index))
        return rows[0] if rows else None

    def run(self) -> None:
        st, entry = self.stack, self.entry
        workers = {"w1", "w2"}  # the stack's CELERY_WORKERS=2 (task_instance.hostname: airtrain_dev.workername)
        deadline, victims = time.monotonic() + 1200, []
        while not victims and time.monotonic() < deadline and not self.stop.is_set() and not self.day_over.is_set():
            victims = [r for r in st.query("airflow", "SELECT map_index, try_number, hostname FROM task_instance "
                                                      "WHERE dag_id = %s AND run_id = %s AND task_id = 'score' AND "
                                                      "state = 'running' AND try_number <= %s",
                                           (DAG, self.run_id, KILL_MAX_TRY)) if r[2] in workers]
            if not victims:
                time.sleep(0.3)
        if not victims:
            entry["skipped"] = "no scoring shard seen running"
            return
        map_index, tried, host = self.rng.choice(victims)
        name = f"worker-{host}"
        hold = st.local / "run" / f"{name}.hold"
        hold.write_text(f"soak: {name} killed while it ran {self.run_id}/score[{map_index}]#{tried}\n")
        try:
            pid = st.pid(name)
            killed = kill_tree(pid) if pid else []
            entry.update(worker=host, shard=f"{self.run_id}/score[{map_index}]", killed_try=tried,
                         map_index=map_index, pids_killed=len(killed), at=round(time.time(), 1))
            say(f"fault kill_worker: {name} (pid {pid}, {len(killed)} processes) killed while it ran "
                f"{self.run_id}/score[{map_index}]#{tried}; held down until the shard runs again")
            wait_until = time.monotonic() + 900  # the heartbeat timeout, the retry delay, a busy machine
            while time.monotonic() < wait_until and not self.stop.is_set():
                now = self.shard(map_index)
                if now and now[0] > tried and now[2] in ("running", "success"):
                    entry["rerun"] = {"try": now[0], "worker": now[1], "state": now[2],
                                      "after_s": round(time.time() - entry["at"], 1)}
                    break
                time.sleep(1)
        finally:
            hold.unlink(missing_ok=True)  # the supervisor starts the worker again

    def verdict(self) -> str | None:
        """None when the killed shard ran again on another worker and succeeded, else what went wrong."""
        e = self.entry
        if "shard" not in e:  # the day's scoring ended before a shard was seen running
            e.setdefault("skipped", "no scoring shard seen running")
        if e.get("skipped"):
            return None
        final = self.shard(e["map_index"])
        e["final"] = {"try": final[0], "worker": final[1], "state": final[2]} if final else None
        if not final or final[2] != "success":
            return f"kill_worker {e['shard']}: the shard did not succeed after the kill ({e['final']})"
        if "rerun" not in e or e["rerun"]["worker"] == e["worker"] or final[0] <= e["killed_try"]:
            return f"kill_worker {e['shard']}: no later try on the other worker ({e.get('rerun')}, {e['final']})"
        return None


# ------------------------------------------------------------------------------------------- oracle


def prediction_digests(stack: Stack) -> dict[str, dict]:
    cols = [c for (c,) in stack.query("warehouse", "SELECT column_name FROM information_schema.columns WHERE "
                                                   "table_schema = 'predictions' AND table_name = 'churn' "
                                                   "ORDER BY ordinal_position") if c not in PRED_EXCLUDED]
    row = "concat_ws('|', " + ", ".join(f'"{c}"::text' for c in cols) + ")"
    out = {}
    for d, n, keys, digest in stack.query(
            "warehouse", f"SELECT as_of_date, count(*), count(DISTINCT (customer_id, as_of_date)), "  # noqa: S608
                         f"md5(string_agg({row}, E'\\n' ORDER BY customer_id, arm, model_version)) "
                         "FROM predictions.churn GROUP BY 1 ORDER BY 1"):
        out[str(d)] = {"rows": n, "keys": keys, "md5": digest}
    return out


def invariants(stack: Stack) -> list[str]:
    from airtrain import invariants as inv
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(stack.spec_dir / "churn.yaml")
    for attempt in range(30):
        try:
            return inv.check(Warehouse(stack.url_of("warehouse")), spec)
        except Exception:  # noqa: BLE001 - a PostgreSQL restart under the check: ask again
            if attempt == 29:
                raise
            time.sleep(2)
    return []


def metadata_figures(stack: Stack) -> dict:
    runs = stack.query("airflow", "SELECT dag_id, state, count(*) FROM dag_run GROUP BY 1, 2 ORDER BY 1, 2")
    tasks = stack.query("airflow", "SELECT count(*), coalesce(sum(try_number), 0), "
                                   "count(*) FILTER (WHERE try_number > 1), coalesce(sum(greatest(try_number - 1, 0)), 0) "
                                   "FROM task_instance")
    failed_tis = stack.query("airflow", "SELECT run_id, task_id, map_index, try_number FROM task_instance "
                                        "WHERE state = 'failed' ORDER BY run_id")
    return {"runs": {f"{d}:{s}": n for d, s, n in runs}, "task_instances": tasks[0][0], "tries": tasks[0][1],
            "task_instances_retried": tasks[0][2], "retries": tasks[0][3],
            "failed_task_instances_now": [list(r) for r in failed_tis]}


# ------------------------------------------------------------------------------------------- the soak


def soak(args: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    faults_on = args.faults == "on"
    base = Path(tempfile.mkdtemp(prefix=f"airtrain-soak-{'faults' if faults_on else 'ref'}-"))
    base.chmod(0o755)
    stack = Stack(base, args.executor)
    write_spec(stack)
    result: dict[str, Any] = {"seed": args.seed, "days": args.days, "executor": args.executor, "faults": args.faults,
                              "start": str(START + dt.timedelta(days=HISTORY)), "rows_per_day": ROWS,
                              "between_run_faults": [], "approvals": [], "days_log": [], "failed_runs": [], "worker_kills": []}
    say(f"starting the stack in {base} (PostgreSQL :{stack.pg_port}, API :{stack.ui_port})")
    up = stack.devstack("up")
    if up.returncode != 0:
        raise RuntimeError("devstack up failed:\n" + (up.stdout + up.stderr)[-3000:])
    result["stack_up_s"] = round(time.monotonic() - t0, 1)
    injector = None
    try:
        say("simulating the data")
        simulate(stack, args.seed, args.days)
        for dag_id in (DAG, MONITOR):
            stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        first, last_hist = START, START + dt.timedelta(days=HISTORY - 1)
        for i in range(HISTORY):
            deliver(stack, START + dt.timedelta(days=i))
        boot = f"soak_bootstrap__{first}_{last_hist}"
        trigger(stack, boot, {"date": str(first), "end_date": str(last_hist), "force_train": True,
                              "force_promote": True, "reason": "soak: the first champion"})
        wait_quiet(stack, result["approvals"])
        if run_state(stack, boot) != "success":
            raise RuntimeError(f"the bootstrap run {boot} did not succeed: {run_state(stack, boot)}")
        rng = random.Random(args.seed * 7919 + 1)
        rng_workers = random.Random(args.seed * 7919 + 2)  # its own stream: the local variant's days stay the same
        state: dict[str, Any] = {"t0": time.time(), "day": None}
        t_soak = time.monotonic()
        if faults_on:
            injector = Injector(stack, args.seed, args.mean_gap, state)
            injector.start()
        for i in range(args.days):
            d = last_hist + dt.timedelta(days=i + 1)
            state["day"] = d
            day_log: dict[str, Any] = {"date": str(d)}
            run_id = f"soak__{d}"
            corrupt = faults_on and i > 0 and rng.random() < args.p_corrupt
            halves = faults_on and rng.random() < args.p_halves
            saved, killer = None, None
            if faults_on and args.executor == "celery" and rng_workers.random() < args.p_worker_kill:
                killer = WorkerKiller(stack, run_id, random.Random(rng_workers.random()), {"kind": "kill_worker",
                                      "day": str(d)}, injector.stop_event)
                killer.start()
            if corrupt:
                with injector.pause:
                    (champ,), = stack.query("warehouse", "SELECT version FROM registry.champions WHERE pipeline = 'churn'")
                    saved = (champ, stack.query("warehouse", "SELECT artifact FROM registry.model_versions WHERE "
                                                             "pipeline = 'churn' AND version = %s", (champ,))[0][0])
                    stack.query("warehouse", "UPDATE registry.model_versions SET artifact = overlay(artifact placing "
                                             "'\\xdeadbeef'::bytea from 200) WHERE pipeline = 'churn' AND version = %s",
                                (champ,))
                result["between_run_faults"].append({"kind": "corrupt_artifact", "day": str(d), "version": champ,
                                                     "at": round(time.time() - state["t0"], 1)})
                say(f"fault corrupt_artifact: champion v{champ}'s artifact altered before {d}")
            if halves:
                entry = {"kind": "half_landing_file", "day": str(d), "at": round(time.time() - state["t0"], 1)}
                result["between_run_faults"].append(entry)

                def between(run_id: str = run_id, d: dt.date = d, entry: dict = entry) -> None:
                    trigger(stack, run_id, {"date": str(d)})
                    deadline = time.monotonic() + 120  # until the run looked at the half file (waits for it)
                    while time.monotonic() < deadline:
                        tis = dict(stack.query("airflow", "SELECT task_id, state FROM task_instance WHERE "
                                                          "dag_id = %s AND run_id = %s", (DAG, run_id)))
                        if tis.get("wait_for_landing") in ("deferred", "up_for_reschedule", "success", "failed") or \
                                tis.get("ingest") not in (None, "none", "scheduled", "queued"):
                            break
                        time.sleep(1)
                    entry["seen_by_run"] = dict(tis)
                    raw = stack.query("warehouse", "SELECT count(*) FROM raw.churn_batches WHERE _partition_date = %s",
                                      (d,))[0][0]
                    entry["raw_rows_while_half"] = raw
                    time.sleep(rng.uniform(1, 5))

                say(f"fault half_landing_file: {d} lands in two halves")
                deliver(stack, d, halves=True, between=between)
            else:
                deliver(stack, d)
                trigger(stack, run_id, {"date": str(d)})
            left = wait_quiet(stack, result["approvals"])
            st = run_state(stack, run_id)
            day_log["state"] = st
            if corrupt:
                n = stack.query("warehouse", "SELECT count(*) FROM predictions.churn WHERE as_of_date = %s", (d,))[0][0]
                day_log["corrupt"] = {"state": st, "predictions_while_corrupt": n}
                with injector.pause:
                    stack.query("warehouse", "UPDATE registry.model_versions SET artifact = %s WHERE pipeline = 'churn' "
                                             "AND version = %s", (saved[1], saved[0]))
                if st == "failed":
                    result["failed_runs"].append({"run_id": run_id, "why": "corrupt_artifact (permanent: refused)",
                                                  "tasks": stack.query("airflow", "SELECT task_id, map_index, try_number "
                                                                       "FROM task_instance WHERE dag_id = %s AND run_id = "
                                                                       "%s AND state = 'failed'", (DAG, run_id))})
                    clear_failed(stack, run_id)
                    left = wait_quiet(stack, result["approvals"])
                    st = run_state(stack, run_id)
            for attempt in range(3):  # a run failed by a transient fault: recorded, then cleared (to go on)
                failed = [r for r, in stack.query("airflow", "SELECT run_id FROM dag_run WHERE dag_id = %s AND "
                                                             "state = 'failed'", (DAG,))
                          if r not in {f["run_id"] for f in result["failed_runs"] if f.get("cleared")}]
                if not failed:
                    break
                for r in failed:
                    tis = stack.query("airflow", "SELECT task_id, map_index, try_number FROM task_instance WHERE "
                                                 "dag_id = %s AND run_id = %s AND state = 'failed'", (DAG, r))
                    # another run (a manual-run fault) on a corrupted-artifact day is refused like the day's own
                    why = failure_cause([task_log(stack, r, *t) for t in tis])
                    result["failed_runs"].append({"run_id": r, "why": why, "tasks": [list(t) for t in tis],
                                                  "cleared": True, "attempt": attempt, "day": str(d)})
                    say(f"run {r} FAILED ({why}; {tis}); clearing it")
                    clear_failed(stack, r)
                left = wait_quiet(stack, result["approvals"])
            st = run_state(stack, run_id)
            day_log["final_state"] = st
            day_log["busy_at_timeout"] = left
            problems = invariants(stack)
            if killer is not None:
                killer.day_over.set()
                killer.join(timeout=60)
                wrong = killer.verdict()
                if not killer.entry.get("skipped"):
                    result["between_run_faults"].append(killer.entry)
                result["worker_kills"].append(killer.entry)
                if wrong:
                    problems.append(wrong)
            day_log["invariant_violations"] = problems
            if problems:
                say(f"INVARIANT VIOLATIONS after {d}: {problems}")
            day_log["t"] = round(time.monotonic() - t_soak, 1)
            result["days_log"].append(day_log)
            say(f"day {i + 1}/{args.days} {d}: {st}; invariants {'hold' if not problems else problems}")
            partial = OUT / f"{'soak' if faults_on else 'reference'}-{args.seed}-{args.days}-partial.json"
            partial.write_text(json.dumps({**result, "faults_log": injector.log if injector else []}, default=str))
        if injector:
            injector.stop_event.set()
            with injector.pause:
                pass
            injector.join(timeout=120)
        state["day"] = None
        wait_quiet(stack, result["approvals"])
        result["soak_wall_s"] = round(time.monotonic() - t_soak, 1)
        result["digests"] = prediction_digests(stack)
        result["final_invariant_violations"] = invariants(stack)
        result["metadata"] = metadata_figures(stack)
        result["faults_log"] = injector.log if injector else []
        result["releases"] = {
            "promotions": stack.query("warehouse", "SELECT from_version, to_version, action, actor, effective_on::text "
                                                   "FROM registry.promotion_log WHERE pipeline = 'churn' ORDER BY id"),
            "rollouts": stack.query("warehouse", "SELECT candidate_version, champion_version, status FROM "
                                                 "registry.rollouts WHERE pipeline = 'churn' ORDER BY 1"),
            "approvals": stack.query("warehouse", "SELECT version, decision, responded_by FROM registry.approvals "
                                                  "WHERE pipeline = 'churn' ORDER BY 1"),
            "drift_retrains": [r for r, in stack.query("airflow", "SELECT run_id FROM dag_run WHERE dag_id = %s AND "
                                                                  "run_id LIKE 'drift__%%' ORDER BY 1", (DAG,))],
        }
    finally:
        if injector:
            injector.stop_event.set()
        result["wall_s"] = round(time.monotonic() - t0, 1)
        if not args.keep:
            stack.devstack("down", timeout=300)
            shutil.rmtree(base, ignore_errors=True)
        else:
            say(f"stack kept in {base} (stop: AIRTRAIN_LOCAL_DIR=... devstack.py down)")
    return result


def compare(result: dict, ref: dict) -> dict:
    """Per date: predictions md5 equal to the reference's; rows lost and duplicated."""
    got = result["digests"]
    last = str(START + dt.timedelta(days=HISTORY + result["days"] - 1))  # a longer reference: its first days
    want = {d: v for d, v in ref["digests"].items() if d <= last}
    different, lost, duplicated = [], 0, 0
    for d in sorted(set(got) | set(want)):
        g, w = got.get(d, {"rows": 0, "keys": 0, "md5": None}), want.get(d, {"rows": 0, "keys": 0, "md5": None})
        if g["md5"] != w["md5"]:
            different.append(d)
        lost += max(0, w["keys"] - g["keys"])
        duplicated += g["rows"] - g["keys"]
    return {"dates": len(want), "partitions_different": different, "rows_lost": lost, "rows_duplicated": duplicated}


def summary(result: dict, cmp: dict | None) -> dict:
    faults: dict[str, int] = {}
    for f in result.get("faults_log", []) + result.get("between_run_faults", []):
        if not f.get("skipped"):
            faults[f["kind"]] = faults.get(f["kind"], 0) + 1
    skipped = sum(1 for f in result.get("faults_log", []) if f.get("skipped"))
    violations = [v for d in result["days_log"] for v in d["invariant_violations"]] + \
        result.get("final_invariant_violations", [])
    return {"days": result["days"], "faults_total": sum(faults.values()), "faults_by_kind": faults,
            "faults_skipped": skipped, "kinds": len(faults), "invariant_violations": len(violations),
            "failed_runs": [(f["run_id"], f["why"]) for f in result["failed_runs"]],
            **(cmp or {}), "wall_s": result["wall_s"], "soak_wall_s": result.get("soak_wall_s"),
            "runs": result.get("metadata", {}).get("runs"),
            "task_instances": result.get("metadata", {}).get("task_instances"),
            "retries": result.get("metadata", {}).get("retries"),
            "releases": result.get("releases"),
            "worker_kills": [{k: f.get(k) for k in ("shard", "worker", "killed_try", "rerun", "final", "skipped")}
                             for f in result.get("worker_kills", [])]}


def render(result: dict) -> str:
    """The figures table of docs/RELIABILITY.md from a soak result."""
    s = result["summary"]
    runs = s.get("runs") or {}
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["faults_by_kind"].items(), key=lambda kv: -kv[1]))
    rel = s.get("releases") or {}
    rows = [
        ("seed, days, executor", f"{result['seed']}, {result['days']} days ({result['start']} on, {ROWS} rows a day; "
                                 f"+ the bootstrap over {HISTORY} days), {result['executor']}"),
        ("runs", ", ".join(f"{k} {v}" for k, v in sorted(runs.items()))),
        ("task instances", f"{s.get('task_instances')} ({s.get('retries')} retries taken)"),
        ("faults injected", f"**{s['faults_total']}** of **{s['kinds']}** kinds: {kinds} "
                            f"({s['faults_skipped']} drawn but not applicable at their moment, e.g. no task running)"),
        ("drift retrains, approvals, canary", f"{len(rel.get('drift_retrains', []))} drift retrain run(s) "
                                              f"{rel.get('drift_retrains')}; approvals {rel.get('approvals')}; "
                                              f"rollouts {rel.get('rollouts')}; promotion log {rel.get('promotions')}"),
        *([("Celery worker kills (whole process tree, mid-shard)", "; ".join(
            f"{k['shard']}#{k['killed_try']} on {k['worker']} -> try {k['final']['try']} on {k['final']['worker']}: "
            f"{k['final']['state']}" if not k.get("skipped") and k.get("final") else f"skipped ({k.get('skipped')})"
            for k in s["worker_kills"]))] if result["executor"] == "celery" else []),
        ("runs failed after their retries", "; ".join(f"{r}: {w}" for r, w in s["failed_runs"]) or "none"),
        ("invariant violations", f"**{s['invariant_violations']}** (checked after each of the {result['days']} days "
                                 "and at the end)"),
        ("rows lost / duplicated", f"**{s['rows_lost']} / {s['rows_duplicated']}**"),
        ("partitions different from the fault-free run", f"**{len(s['partitions_different'])}** of {s['dates']} "
                                                          f"{s['partitions_different'] or ''}"),
        ("wall time", f"{s['wall_s']:.0f} s in all ({s['soak_wall_s']:.0f} s for the days under faults)"),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def find_reference(seed: int, days: int) -> Path:
    """The fault-free result of this seed: the shortest one cached that covers ``days`` (its first days are
    the same run: the simulation is seeded per date, drift starts on a fixed day; the predictions do not
    depend on the executor, so the Celery soak compares with a LocalExecutor reference), else the path a
    new reference of exactly ``days`` is written to."""
    have = sorted((int(p.stem.split("-")[2]), p) for p in OUT.glob(f"reference-{seed}-*.json")
                  if len(p.stem.split("-")) == 3 and p.stem.split("-")[2].isdigit())  # not a -partial
    return next((p for n, p in have if n >= days), OUT / f"reference-{seed}-{days}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--executor", choices=("local", "celery"), default="local")
    ap.add_argument("--faults", choices=("on", "off"), default="on")
    ap.add_argument("--mean-gap", type=float, default=10.0, help="mean seconds between two timed faults")
    ap.add_argument("--p-halves", type=float, default=0.3, help="share of days whose file lands in two halves")
    ap.add_argument("--p-corrupt", type=float, default=0.15, help="share of days run against a corrupted artifact")
    ap.add_argument("--p-worker-kill", type=float, default=1.0,
                    help="Celery: share of days on which a worker is killed while it runs a scoring shard")
    ap.add_argument("--keep", action="store_true", help="leave the stack running (to look at it)")
    ap.add_argument("--reference", type=Path, default=None, help="the fault-free result to compare with")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    ref_path = args.reference or (find_reference(args.seed, args.days) if args.faults == "on"
                                  else OUT / f"reference-{args.seed}-{args.days}.json")
    if args.faults == "on" and not ref_path.exists() and args.reference is None:
        say(f"no fault-free reference for seed {args.seed}, {args.days} days: running it first")
        if main([*(argv if argv is not None else sys.argv[1:]), "--faults", "off"]) != 0:
            return 1
    try:
        result = soak(args)
    except Exception:  # noqa: BLE001 - the harness reports and exits 1
        traceback.print_exc()
        return 1
    if args.faults == "off":
        tmp = ref_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str))
        tmp.replace(ref_path)
        say(f"reference written: {ref_path}")
        return 0
    deadline = time.monotonic() + 3600  # a reference running alongside (another process) may still be going
    while not ref_path.exists() and time.monotonic() < deadline:
        time.sleep(10)
    if not ref_path.exists():
        say(f"no reference at {ref_path}: nothing to compare with")
        return 1
    cmp = compare(result, json.loads(ref_path.read_text()))
    result["summary"] = summary(result, cmp)
    out = OUT / f"soak-{args.seed}-{args.days}-{args.executor}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(render(result))
    print(json.dumps(result["summary"], indent=1, default=str))
    print(render(result))
    s = result["summary"]
    ok = (s["invariant_violations"] == 0 and not s["partitions_different"] and s["rows_lost"] == 0
          and s["rows_duplicated"] == 0 and all("permanent" in why for _, why in s["failed_runs"]))
    say(f"soak {'PASSED' if ok else 'FAILED'}: {out}")
    return 0 if ok else 1


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    # SIGTERM (a CI timeout, `kill`) stops the soak like Ctrl-C: the finally blocks take its stack down
    signal.signal(signal.SIGTERM, _terminate)
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        say("interrupted: its stack was taken down")
        raise SystemExit(130) from None
