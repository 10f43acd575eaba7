"""Benchmark: one daily `churn_retrain` run through the REAL scheduler (LocalExecutor).

    python bench/daily_run.py            # 2,000 rows a day; writes the "daily-run" section of docs/BENCHMARKS.md
    python bench/daily_run.py --no-write --keep

All on throw-away state under a temporary folder:

1. starts its own PostgreSQL (databases ``airflow`` and ``warehouse``) and migrates Airflow's metadata;
2. lands ``--history-days`` days of simulated churn data (``--rows`` rows a day, labels one day late)
   and trains and promotes a first champion with the pipeline's own steps, in this process;
3. starts the Airflow API server, scheduler (LocalExecutor) and DAG processor configured as `make run`
   configures them - including the executor's fork server that preloads the heavy libraries
   (:mod:`airtrain.preload`) - with the shipped ``include/pipelines/churn.yaml``. Only its schedules
   are moved to a date that never comes, so that the scheduler creates no run of its own;
4. runs ``churn_retrain`` for three consecutive new days, each a manual run with the day as its
   ``date`` - exactly what the scheduled run of the next morning does (ingest, validate, train,
   evaluate, promote, score the day, shadow-score):

   * **first** run after the scheduler started: it also pays the fork server's one-off start-up;
   * **daily** run (the headline figure): the next day, as every later day finds the scheduler;
   * **no preload**: the scheduler restarted as before this change (plain fork, no preloaded
     libraries, so every task imports pandas, scikit-learn, skops, GX ... again) - the baseline,
     measured in the same run on the same machine;

5. runs the daily run's steps once more **in this process** (libraries imported, no scheduler,
   promotion as a dry run, before the run itself): the work. Run time minus work is the fixed cost;
6. counts warning lines in every task log of the runs.

Times come from the metadata database: a run's wall time is from its queued time to its end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT / "dev"), str(ROOT / "bench")]
BIN = Path(sys.executable).parent
SERVICES = ("api-server", "scheduler", "dag-processor")
TASK_ORDER = ["check_params", "route", "prepare", "ingest", "validate", "train", "evaluate", "promote",
              "begin_scoring", "score", "publish_predictions", "score_shadow"]


def say(msg: str) -> None:
    print(f"[daily-run] {msg}", flush=True)


#: one generated DAG file per pipeline spec, as `make run` (scripts/devstack.py BUNDLE_CONFIG)
DEVSTACK_BUNDLE_CONFIG = ('[{"name": "airtrain", "classpath": "airtrain_airflow.bundle.SpecDagBundle", '
                          '"kwargs": {"refresh_interval": 30}}]')

#: the executor's fork server imports the heavy libraries once (airtrain.preload); as `make run`
PRELOAD_ENV = {"AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
               "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": "airtrain_airflow.preload"}


def airflow_env(tmp: Path, pg_url: str, api_port: int, project: Path, spec_dir: Path) -> dict[str, str]:
    """The same Airflow configuration `make run` uses (scripts/devstack.py), on throw-away paths."""
    home = tmp / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    base = pg_url.rsplit("/", 1)[0]
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": DEVSTACK_BUNDLE_CONFIG,
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp / "dag_bundles"),
        # the plugin is registered by the installed package's entry point (pyproject.toml), as in `make run`
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        **PRELOAD_ENV,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__FERNET_KEY": __import__("base64").urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": base.replace("postgresql://", "postgresql+psycopg2://", 1) + "/airflow",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW_CONN_WAREHOUSE": base + "/warehouse",
        "AIRTRAIN_PROJECT_ROOT": str(project),
        "AIRTRAIN_SPEC_DIR": str(spec_dir),
        "AIRTRAIN_REPORTS_DIR": str(project / "reports"),
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "SCARF_ANALYTICS": "false",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


class Stack:
    """PostgreSQL + the Airflow services, started and stopped by this benchmark only."""

    def __init__(self, tmp: Path) -> None:
        from airtrain_dev.localpg import LocalPostgres, free_port

        self.tmp = tmp
        self.pg = LocalPostgres(tmp / "pg", free_port(), secrets.token_hex(8))
        self.api_port = free_port()
        self.project = tmp / "project"
        self.spec_dir = tmp / "pipelines"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env: dict[str, str] = {}

    def start_db(self) -> None:
        self.pg.start()
        for db in ("airflow", "warehouse"):
            self.pg.create_database(db)
        self.env = airflow_env(self.tmp, self.pg.url("postgres"), self.api_port, self.project, self.spec_dir)
        t0 = time.monotonic()
        self.airflow("db", "migrate")
        say(f"airflow db migrate: {time.monotonic() - t0:.0f} s")

    def airflow(self, *args: str) -> str:
        out = subprocess.run([str(BIN / "airflow"), *args], env={**os.environ, **self.env}, capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        return out.stdout

    def start_services(self, names: tuple[str, ...] = SERVICES, env: dict[str, str] | None = None) -> None:
        logs = self.tmp / "service-logs"
        logs.mkdir(exist_ok=True)
        for name in names:
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
            self.procs[name] = subprocess.Popen([str(BIN / "airflow"), name], env={**os.environ, **(env or self.env)},
                                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True, cwd=ROOT)

    def stop_services(self, names: tuple[str, ...] = SERVICES) -> None:
        import signal

        procs = [self.procs.pop(n) for n in names if n in self.procs]
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            # the whole session, also once its leader is gone: an idle LocalExecutor worker outlived its
            # scheduler after bench-scale (found in ps half an hour later)
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        self.stop_services()
        self.pg.stop()

    def meta(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(self.pg.url("airflow")) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()


def bootstrap(stack: Stack, spec, first: dt.date, days: int, rows: int) -> None:
    """History + a first champion, with the pipeline's own steps (not measured)."""
    from airtrain import simulate
    from airtrain.steps import release, retrain
    from airtrain.steps.schema import apply_schema
    from airtrain.warehouse.connection import Warehouse

    wh = Warehouse(stack.env["AIRFLOW_CONN_WAREHOUSE"])
    apply_schema(wh, spec)
    landing = stack.project / spec.source.path
    simulate.generate_demo(wh, landing, start=first, days=days, rows_per_day=rows, label_delay_days=1)
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    retrain.ingest(wh, spec, dates, "bench-bootstrap", stack.project)
    retrain.validate(wh, spec, dates, "bench-bootstrap", today=dates[-1], reports_root=stack.project / "reports")
    out = retrain.train(wh, spec, dates[-1], "bench-bootstrap")
    ev = retrain.evaluate(wh, spec, out["version"], "bench-bootstrap", dates[-1])
    release.promote(wh, spec, ev, run_id="bench-bootstrap", actor="bench")


def land_day(stack: Stack, spec, day: dt.date, first: dt.date, rows: int) -> None:
    from airtrain import simulate
    from airtrain.warehouse.connection import Warehouse

    feats, labels = simulate.simulate_day(day, rows=rows, start=first, label_delay_days=1)
    simulate.write_landing_file(feats, stack.project / spec.source.path, day)
    simulate.load_labels(Warehouse(stack.env["AIRFLOW_CONN_WAREHOUSE"]), labels)


def wait_for_dag(stack: Stack, dag_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            if stack.meta("SELECT 1 FROM dag WHERE dag_id = %s", (dag_id,)):
                return
        time.sleep(1)
    raise RuntimeError(f"{dag_id} was not registered within {timeout} s; see {stack.tmp}/service-logs")


def run_once(stack: Stack, dag_id: str, day: dt.date, label: str, timeout: float = 900) -> dict[str, Any]:
    """A manual run of ``dag_id`` with ``date`` = ``day``; waits for it; returns its timings."""
    run_id = f"bench_{label}__{day.isoformat()}"
    stack.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps({"date": day.isoformat()}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = stack.meta("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        if rows and rows[0][0] in ("success", "failed"):
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"run {run_id} did not finish within {timeout} s")
    (state, queued, start, end), = stack.meta(
        "SELECT state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s",
        (dag_id, run_id))
    tis = stack.meta(
        "SELECT task_id, map_index, state, queued_dttm, start_date, end_date, duration FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s ORDER BY start_date NULLS LAST", (dag_id, run_id))
    tasks = []
    for task_id, map_index, ti_state, q, s, e, dur in tis:
        tasks.append({"task": task_id + (f"[{map_index}]" if map_index >= 0 else ""), "state": ti_state,
                      "queued_wait": (s - q).total_seconds() if s and q else None,
                      "duration": float(dur) if dur is not None else None,
                      "start": (s - queued).total_seconds() if s else None,
                      "end": (e - queued).total_seconds() if e else None})
    busy = _union_seconds([(t["start"], t["end"]) for t in tasks if t["start"] is not None and t["end"] is not None])
    return {"run_id": run_id, "state": state, "wall": (end - queued).total_seconds(),
            "start_delay": (start - queued).total_seconds() if start else None, "tasks": tasks,
            "task_seconds": sum(t["duration"] or 0 for t in tasks), "busy": busy}


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def in_process_work(stack: Stack, spec, day: dt.date) -> dict[str, float]:
    """The same steps for the same day in this (warm) process: the work, without the fixed cost."""
    from airtrain.serving import publish, scoring
    from airtrain.serving.target import NoModelError
    from airtrain.steps import release, retrain, schema
    from airtrain.warehouse.connection import Warehouse

    wh = Warehouse(stack.env["AIRFLOW_CONN_WAREHOUSE"])
    run_id = f"bench_inprocess__{day}"
    out: dict[str, float] = {}

    def timed(name: str, fn, *a, **kw):
        t0 = time.perf_counter()
        res = fn(*a, **kw)
        out[name] = out.get(name, 0.0) + time.perf_counter() - t0
        return res

    timed("prepare", schema.prepare, wh, spec)
    timed("ingest", retrain.ingest, wh, spec, [day], run_id, stack.project)
    timed("validate", retrain.validate, wh, spec, [day], run_id, today=day + dt.timedelta(days=1),
          reports_root=stack.project / "reports")
    trained = timed("train", retrain.train, wh, spec, day, run_id)
    ev = timed("evaluate", retrain.evaluate, wh, spec, trained["version"], run_id, day)
    timed("promote", release.promote, wh, spec, ev, run_id=run_id, actor="bench", dry_run=True)
    shards = spec.scoring.partitions
    target = timed("begin_scoring", scoring.begin, wh, spec, day, "champion")
    results = [timed("score", scoring.score_shard, wh, spec, target, run_id=run_id, shard=s, shards=shards)
               for s in range(shards)]
    timed("publish_predictions", publish.publish, wh, spec, target, sum(r["rows"] for r in results))
    if spec.scoring.shadow:
        with suppress(NoModelError):
            timed("score_shadow", scoring.score_date, wh, spec, day, run_id=run_id, model="challenger", role="shadow")
    return out


NOISE_GX = "GX 'Skipping registering function'"
NOISE = {
    "deprecation warnings": re.compile(r"DeprecationWarning|FutureWarning|PendingDeprecationWarning|DeprecatedImport"),
    NOISE_GX: re.compile(r"Skipping registering function"),
    "warnings (any)": re.compile(r"[Ww]arning"),
}


def count_noise(log_dir: Path, run_id: str) -> dict[str, dict[str, int]]:
    """Matching lines per task log of ``run_id`` (all attempts)."""
    out: dict[str, dict[str, int]] = {}
    for path in log_dir.rglob("*.log"):
        if f"run_id={run_id}" not in str(path):
            continue
        task = next((p.removeprefix("task_id=") for p in path.parts if p.startswith("task_id=")), path.stem)
        text = path.read_text(errors="replace").splitlines()
        counts = out.setdefault(task, {k: 0 for k in NOISE} | {"lines": 0})
        counts["lines"] += len(text)
        for key, rx in NOISE.items():
            counts[key] += sum(1 for line in text if rx.search(line))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--history-days", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="print only; do not rewrite docs/BENCHMARKS.md")
    ap.add_argument("--keep", action="store_true", help="leave the temporary folder (logs) in place")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the Airflow services (e.g. PYTHONPROFILEIMPORTTIME=1)")
    args = ap.parse_args()
    import signal

    import yaml
    from airtrain.spec import ScheduleSpec, load_spec

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack on `kill` too
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=3 - i) for i in range(3)]  # first, daily, no-preload
    first = days[0] - dt.timedelta(days=args.history_days)
    tmp = Path(tempfile.mkdtemp(prefix="airtrain-daily-bench-"))
    stack = Stack(tmp)
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["schedule"].update(retrain="0 3 29 2 *", monitor="0 5 29 2 *")  # no scheduled run: we start them
    if "start_paused" in ScheduleSpec.model_fields:
        data["schedule"]["start_paused"] = True
    stack.spec_dir.mkdir(parents=True)
    (stack.spec_dir / "churn.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(stack.spec_dir / "churn.yaml")
    out: dict[str, Any] = {"rows": args.rows, "history_days": args.history_days, "days": [str(d) for d in days]}
    try:
        stack.start_db()
        stack.env.update(kv.split("=", 1) for kv in args.env)
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith(("GX_", "DO_NOT", "EVIDENTLY"))})
        t0 = time.monotonic()
        bootstrap(stack, spec, first, args.history_days, args.rows)
        for d in days:
            land_day(stack, spec, d, first, args.rows)
        say(f"history {first} .. {days[0] - dt.timedelta(days=1)} ({args.history_days} days x {args.rows} rows), "
            f"a champion, and the files of {', '.join(map(str, days))}: {time.monotonic() - t0:.0f} s")
        stack.start_services()
        wait_for_dag(stack, spec.retrain_dag_id)
        stack.airflow("dags", "unpause", spec.retrain_dag_id)
        say("API server, scheduler (fork server preloading airtrain.preload) and DAG processor are up")
        out["first"] = measured(stack, spec, days[0], "first")
        with suppress(ImportError):
            import airtrain.preload  # noqa: F401 - the same libraries the task processes inherit
        out["work"] = in_process_work(stack, spec, days[1])
        say("in-process work: " + ", ".join(f"{k} {v:.2f} s" for k, v in out["work"].items()))
        out["daily"] = measured(stack, spec, days[1], "daily")
        stack.stop_services(("scheduler",))
        stack.start_services(("scheduler",), {k: v for k, v in stack.env.items() if k not in PRELOAD_ENV})
        say("scheduler restarted without the preloading fork server (plain fork, as before)")
        out["no_preload"] = measured(stack, spec, days[2], "no_preload")
        (tmp / "result.json").write_text(json.dumps(out, indent=1, default=str))
        if any(out[k]["state"] != "success" for k in ("first", "daily", "no_preload")):
            say(f"a run failed; logs in {tmp}/logs")
            args.keep = True
            return 1
        if not args.no_write:
            write_report(Path(args.out), out)
        return 0
    finally:
        stack.stop()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def measured(stack: Stack, spec, day: dt.date, label: str) -> dict[str, Any]:
    load = os.getloadavg()[0]
    res = run_once(stack, spec.retrain_dag_id, day, label)
    res["load"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    res["noise"] = count_noise(stack.tmp / "logs", res["run_id"])
    say(f"{res['run_id']}: {res['state']} in {res['wall']:.1f} s (tasks busy {res['busy']:.1f} s)")
    for t in res["tasks"]:
        say(f"   {t['task']:<24} {t['state']:<9} wait {t['queued_wait'] or 0:5.1f} s  "
            f"run {t['duration'] or 0:5.1f} s  [{t['start'] or 0:5.1f} .. {t['end'] or 0:5.1f}]")
    say(f"   log lines: {noise_total(res)}")
    return res


def noise_total(res: dict[str, Any]) -> dict[str, int]:
    return {k: sum(v[k] for v in res["noise"].values()) for k in NOISE}


def write_report(path: Path, out: dict[str, Any]) -> None:
    from bench_report import replace_section  # type: ignore[import-not-found]

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    replace_section(path, "daily-run", render(out, machine))


def _by_task(res: dict[str, Any]) -> dict[str, float]:
    """Task durations by task (mapped shards added up), skipped tasks left out."""
    out: dict[str, float] = {}
    for t in res["tasks"]:
        if t["state"] == "success" and t["duration"] is not None:
            name = t["task"].split("[")[0]
            out[name] = out.get(name, 0.0) + t["duration"]
    return out


def render(out: dict[str, Any], machine: str) -> str:
    daily, first, base, work = out["daily"], out["first"], out["no_preload"], out["work"]
    total_work = sum(work.values())
    lines = [
        "## A daily run through the scheduler",
        "",
        f"Measured {dt.date.today()} on {machine}, by `bench/daily_run.py` (`make bench`): the shipped churn "
        f"spec, **{out['rows']:,} rows a day**, labels one day late, {out['history_days']} days of history; "
        "PostgreSQL, the Airflow API server, scheduler (LocalExecutor) and DAG processor started by the "
        "benchmark as `make run` starts them. Each run is one new day through the real scheduler: ingest, "
        "validate, train, evaluate, promote, score (2 shards), publish, shadow-score. Seconds; the ratio is to "
        "the baseline measured in the same run.",
        "",
        "| run | wall | tasks running | between tasks | × baseline | load avg (1 min) before → after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, res in (("**daily run** (the executor's fork server preloads the libraries)", daily),
                       ("first run after the scheduler started (fork server starting)", first),
                       ("baseline: no preload (plain fork, every task imports its libraries)", base)):
        lines.append(f"| {label} | {res['wall']:.1f} | {res['busy']:.1f} | {res['wall'] - res['busy']:.1f} | "
                     f"{res['wall'] / base['wall']:.2f}× | {res['load'][0]} → {res['load'][1]} |")
    lines.append(f"| the same steps in one warm process: the **work** | {total_work:.1f} | {total_work:.1f} | — | "
                 f"{total_work / base['wall']:.2f}× | |")
    d, b = _by_task(daily), _by_task(base)
    lines += [
        "",
        "Where the daily run's time goes, task by task (task run time from the metadata database; the "
        "fixed cost is the run time minus the work: task process, DAG parse, API calls, imports):",
        "",
        "| task | daily run | work | fixed cost | baseline (no preload) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in TASK_ORDER:
        if name not in d and name not in b:
            continue
        w = work.get(name)
        fixed = d.get(name, 0.0) - (w or 0.0)
        lines.append(f"| `{name}`{' (2 shards, in parallel)' if name == 'score' else ''} | {d.get(name, 0):.1f} | "
                     f"{'—' if w is None else f'{w:.2f}'} | {fixed:.1f} | {b.get(name, 0):.1f} |")
    lines.append(f"| **all tasks** | {sum(d.values()):.1f} | {total_work:.1f} | {sum(d.values()) - total_work:.1f} | "
                 f"{sum(b.values()):.1f} |")
    nd, nb = noise_total(daily), noise_total(base)
    lines += [
        "",
        f"Log noise in the daily run's {len(daily['noise'])} task logs: {nd['warnings (any)']} warning lines "
        f"({nd['deprecation warnings']} deprecation warnings, {nd[NOISE_GX]} GX 'Skipping registering function' "
        f"lines); baseline run: {nb['warnings (any)']} ({nb[NOISE_GX]} GX). The one warning left per task is "
        "Airflow's own (`GitWildMatchPattern` deprecation while it loads the DAG bundle).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
