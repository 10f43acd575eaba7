"""Load test against the running local stack (`make run`): a 60-day backfill of `churn_retrain`
through the scheduler and the LocalExecutor, runs and tasks in parallel.

    make load-test                         # = python scripts/load_test.py --days 60 --max-active-runs 4

Reports the wall time, the run states, the peak number of task instances running at once, the
largest XCom, and checks the warehouse invariants (airtrain.invariants) afterwards. Writes
.local/load-test.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "include"), str(ROOT / "dev")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--max-active-runs", type=int, default=4)
    ap.add_argument("--end", type=dt.date.fromisoformat, default=None, help="last logical date (default: yesterday)")
    args = ap.parse_args()
    import psycopg2
    from airtrain import invariants
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse
    from devstack import airflow_env, load_dotenv

    cfg = load_dotenv()
    env = airflow_env(cfg)
    meta = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
    end = args.end or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    start = end - dt.timedelta(days=args.days - 1)
    t0 = time.monotonic()
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), "backfill", "create", "--dag-id", "churn_retrain",
                          "--from-date", start.isoformat(), "--to-date", end.isoformat(),
                          "--max-active-runs", str(args.max_active_runs), "--reprocess-behavior", "completed"],
                         env={**__import__("os").environ, **env, "PYTHONWARNINGS": "ignore"}, capture_output=True,
                         text=True)
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-3000:], file=sys.stderr)
        return 1
    with psycopg2.connect(meta) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM backfill WHERE dag_id = 'churn_retrain'")
        backfill_id = cur.fetchone()[0]
    print(f"backfill {backfill_id}: churn_retrain {start} .. {end}, max {args.max_active_runs} runs at once")
    peak_tasks = peak_runs = 0
    states: dict[str, int] = {}
    while True:
        with psycopg2.connect(meta) as conn, conn.cursor() as cur:
            cur.execute("SELECT state, count(*) FROM dag_run WHERE backfill_id = %s GROUP BY 1", (backfill_id,))
            states = {k: v for k, v in cur.fetchall()}
            cur.execute("SELECT count(*) FROM task_instance ti JOIN dag_run dr ON dr.dag_id = ti.dag_id AND "
                        "dr.run_id = ti.run_id WHERE dr.backfill_id = %s AND ti.state = 'running'", (backfill_id,))
            peak_tasks = max(peak_tasks, cur.fetchone()[0])
            peak_runs = max(peak_runs, states.get("running", 0))
            cur.execute("SELECT completed_at FROM backfill WHERE id = %s", (backfill_id,))
            done = cur.fetchone()[0] is not None
        total = sum(states.values())
        print(f"  {time.monotonic() - t0:6.0f}s  {states}  (tasks running now/peak: {peak_tasks})", flush=True)
        if done or (total >= args.days and not states.get("running") and not states.get("queued")):
            break
        time.sleep(10)
    wall = time.monotonic() - t0
    with psycopg2.connect(meta) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(octet_length(x.value::text)), count(*) FROM xcom x JOIN dag_run dr ON "
                    "dr.id = x.dag_run_id WHERE dr.backfill_id = %s", (backfill_id,))
        xcom_max, xcom_n = cur.fetchone()
        cur.execute("SELECT ti.task_id, ti.state, count(*) FROM task_instance ti JOIN dag_run dr ON "
                    "dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id WHERE dr.backfill_id = %s GROUP BY 1, 2 "
                    "ORDER BY 1, 2", (backfill_id,))
        task_states = [list(r) for r in cur.fetchall()]
    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    problems = invariants.check(Warehouse(env["AIRFLOW_CONN_WAREHOUSE"]), spec)
    result = {"days": args.days, "start": start.isoformat(), "end": end.isoformat(),
              "max_active_runs": args.max_active_runs, "wall_seconds": round(wall, 1), "run_states": states,
              "peak_running_tasks": peak_tasks, "peak_running_runs": peak_runs, "xcom_max_bytes": xcom_max,
              "xcoms": xcom_n, "task_states": task_states, "invariant_violations": problems}
    (ROOT / ".local").mkdir(exist_ok=True)
    (ROOT / ".local" / "load-test.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "task_states"}, indent=1, default=str))
    ok = not problems and (xcom_max or 0) < 64 * 1024 and not states.get("failed")
    print("load test passed" if ok else "load test FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
