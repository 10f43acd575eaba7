"""Drift-check benchmark (part of `make bench`): how long one monitoring window takes at 100k and
1M rows x the demo's 9 features, and what the deterministic sampling buys.

For each size, in fresh subprocesses (so peak RSS is that measurement's):

* **sampled** - :func:`airtrain.monitoring.check.run_check` as the monitor DAG runs it: count the window,
  read a deterministic sample of ``monitoring.sample_rows`` (50,000) rows, score it with the
  champion, Evidently per-column drift + prediction drift, HTML report, metrics and decision
  written to PostgreSQL;
* **full** (baseline, same run) - the same check with sampling off (``sample_rows`` = window size).

    python bench/drift.py                   # 100k and 1M rows
    python bench/drift.py --sizes 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "dev"), str(ROOT / "bench")]

from run import AS_OF, _features_sql, setup  # noqa: E402


def child(url: str, n: int, mode: str) -> dict:
    t_imp = time.monotonic()
    import evidently  # noqa: F401 - imported before timing: a worker pays it once per process
    import_s = time.monotonic() - t_imp

    from airtrain.monitoring.check import run_check
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    if mode == "full":
        spec = spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"sample_rows": n})})
    wh = Warehouse(url)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        res = run_check(wh, spec, AS_OF, run_id=f"bench-{mode}", reports_root=Path(tmp))
        seconds = time.monotonic() - t0
    return {"rows": n, "mode": mode, "seconds": seconds, "rows_per_s": n / seconds, "decision": res["decision"],
            "drift_share": res["drift_share"], "evidently_import_s": import_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def build_reference(url: str) -> None:
    from airtrain.monitoring.reference import ensure_reference
    from airtrain.registry import champions
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    wh = Warehouse(url)
    ensure_reference(wh, spec, champions.champion_version(wh, spec))


def load_window(url: str, n: int) -> None:
    import psycopg2
    from airtrain.spec import load_spec

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM features.churn WHERE as_of_date = %s", (AS_OF,))
        cur.execute(_features_sql(spec, n))
        cur.execute("ANALYZE features.churn")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--child", nargs=2, metavar=("N", "MODE"), help="(internal) the warehouse URL is $WAREHOUSE_URL")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(os.environ["WAREHOUSE_URL"], int(args.child[0]), args.child[1])))
        return 0
    from airtrain_dev.localpg import LocalPostgres, free_port

    tmp = Path(tempfile.mkdtemp(prefix="airtrain-bench-drift-"))
    pg = LocalPostgres(tmp / "pg", free_port(), secrets.token_hex(8))
    pg.start()
    results = []
    try:
        pg.create_database("bench")
        url = pg.url("bench")
        setup(url)
        build_reference(url)  # once per model version in production too: not part of a check's time
        for n in [int(s) for s in args.sizes.split(",")]:
            load_window(url, n)
            for mode in ("sampled", "full"):
                print(f"== drift check, {n:,} rows: {mode}", flush=True)
                # the URL (with its password) goes through the environment, never argv (visible in `ps`)
                proc = subprocess.run([sys.executable, __file__, "--child", str(n), mode], capture_output=True,
                                      text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "include"),
                                                      "WAREHOUSE_URL": url,
                                                      "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"})
                if proc.returncode != 0:
                    from airtrain.warehouse.redaction import redact_text

                    print(redact_text(proc.stderr[-4000:]), file=sys.stderr)
                    return 1
                res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
                print(res, flush=True)
                results.append(res)
        write_report(Path(args.out), results)
    finally:
        pg.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def write_report(path: Path, results: list[dict]) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    by = {(r["rows"], r["mode"]): r for r in results}
    lines = [
        "## Drift checks",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine}; PostgreSQL started by the benchmark. One monitoring "
        "window of N rows × the demo's 9 features, checked against the champion's stored reference "
        "(50,000 rows). Seconds per check, and the ratio to the unsampled check measured in the same run.",
        "",
        "| window rows | sampled check (s) | rows/s | peak RSS (MB) | unsampled check (s) | peak RSS (MB) | "
        "× faster sampled |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["rows"] for r in results}):
        s, f = by.get((n, "sampled")), by.get((n, "full"))
        if not s or not f:
            continue
        lines.append(f"| {n:,} | {s['seconds']:.2f} | {s['rows_per_s']:,.0f} | {s['peak_rss_mb']:,.0f} | "
                     f"{f['seconds']:.2f} | {f['peak_rss_mb']:,.0f} | {f['seconds'] / s['seconds']:.1f}× |")
    imp = [r["evidently_import_s"] for r in results]
    lines += [
        "",
        "* **sampled**: `airtrain.monitoring.check.run_check` exactly as the `drift_check` task runs it — count the "
        "window, read a deterministic sample (`ORDER BY md5(key|date) LIMIT monitoring.sample_rows`), score it with "
        "the champion, Evidently `ValueDrift` per feature + prediction drift, HTML report, metrics and decision "
        "written in one transaction.",
        "* **unsampled**: the same with `monitoring.sample_rows` set to the window size (every row read, scored and "
        "compared).",
        f"* Not included: `import evidently` ({min(imp):.1f}–{max(imp):.1f} s per fresh process), paid once per "
        "task process (it is never imported when DAG files are parsed), and the one-off reference sample of a "
        "new model version (built before the measurements, as the first check after a promotion does).",
        "* **rows/s** is window rows per second of check. Sampling keeps the check's time and memory flat as the "
        "window grows; the unsampled check grows with it.",
    ]
    from bench_report import replace_section  # type: ignore[import-not-found]

    replace_section(path, "drift", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
