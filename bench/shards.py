"""Scoring one date in 1, 2 and 4 shards, each shard in its own worker process, all at once
(what mapped `score` tasks on Celery workers do), then ONE publish. Writes the ``shards`` section
of docs/BENCHMARKS.md.

    python bench/shards.py                          # 10M rows (several minutes)
    python bench/shards.py --rows 1000000           # quicker

Own PostgreSQL (started here), a champion trained by the real pipeline steps, ``--rows`` feature
rows of one date generated inside PostgreSQL. For each shard count: ``scoring.begin``, one fresh
process per shard running ``scoring.score_shard`` (its peak RSS measured by that process), then
``scoring.publish``. Wall time = begin → publish committed. The baseline is the 1-shard run of the
same invocation. Not through the Celery queue: the in-process comparison for
``bench/celery_shards.py`` (`make bench-celery`), which scores the same way through the scheduler,
the broker and the Celery workers (and runs this path once as its own comparison).
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


def shard_child(url: str, target: str, shard: int, shards: int) -> dict:
    from airtrain.serving import scoring
    from airtrain.serving.target import ScoringTarget
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    t = ScoringTarget.from_dict(json.loads(target))
    t0 = time.perf_counter()
    res = scoring.score_shard(Warehouse(url), spec, t, run_id="bench-shards", shard=shard, shards=shards)
    res["wall_s"] = time.perf_counter() - t0
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def measure(url: str, rows: int, shards: int) -> dict:
    from airtrain.registry import champions
    from airtrain.serving import publish, scoring
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    wh = Warehouse(url)
    version = champions.champion_version(wh, spec)
    t0 = time.perf_counter()
    target = scoring.begin(wh, spec, AS_OF, version, run_id=f"bench-{shards}")
    procs = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(target.as_dict()), str(s),
                               str(shards)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "include"), "WAREHOUSE_URL": url})
             for s in range(shards)]
    parts = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            from airtrain.warehouse.redaction import redact_text

            raise RuntimeError(redact_text(err[-3000:]))
        parts.append(json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1][7:]))
    pub = publish.publish(wh, spec, target, sum(p["rows"] for p in parts))
    wall = time.perf_counter() - t0
    assert pub["rows"] == rows, (pub, rows)
    return {"shards": shards, "rows": rows, "wall_s": wall, "rows_per_s": rows / wall,
            "shard_rss_mb": [round(p["peak_rss_mb"]) for p in parts],
            "shard_rows_per_s": [round(p["rows"] / p["wall_s"]) for p in parts]}


def render(results: list[dict], rows: int, machine: str) -> str:
    base = next(r for r in results if r["shards"] == 1)
    lines = [
        "## Scoring one date in parallel shards",
        "",
        f"Measured {dt.date.today()} on {machine} (shared with other jobs); `python bench/shards.py --rows {rows}`. "
        f"One date of {rows:,} feature rows; each shard is its own process (as a mapped `score` task on a Celery "
        "worker), all started at once, then one `publish` swap. Baseline: 1 shard, same run.",
        "",
        "| shards | wall: begin → publish (s) | rows/s | × 1 shard | rows/s per shard process | peak RSS per shard "
        "process (MB) |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['shards']} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | "
                     f"{r['rows_per_s'] / base['rows_per_s']:.2f}× | "
                     f"{', '.join(f'{v:,}' for v in r['shard_rows_per_s'])} | "
                     f"{', '.join(str(v) for v in r['shard_rss_mb'])} |")
    lines += [
        "",
        "* Each shard streams `features.churn` rows whose `hashtext(key) mod shards` is its number, scores them in "
        "record batches of `scoring.batch_rows`, and COPYs them into the shared stage table; `publish` builds the "
        "primary key and attaches the partition in one transaction (the wall time includes it).",
        "* Peak RSS per shard stays flat as the date grows (streaming); it is per process, so a worker with "
        "`worker_concurrency` slots needs about that many times the figure.",
        "* With 2 cores, more than 2 shards cannot add throughput: the model's `predict_proba` is CPU-bound. On a "
        "Celery stack the shards of one date spread over the workers (`make scale-test` checks it), so throughput "
        "grows with worker cores until PostgreSQL's COPY and primary-key build (see the write-back table) limit it.",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--child", nargs=3, metavar=("TARGET", "SHARD", "SHARDS"), help="(internal) URL: $WAREHOUSE_URL")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = ap.parse_args()
    if args.child:
        target, shard, shards = args.child
        print("RESULT " + json.dumps(shard_child(os.environ["WAREHOUSE_URL"], target, int(shard), int(shards))))
        return 0
    import psycopg2
    from airtrain.spec import load_spec
    from airtrain_dev.localpg import LocalPostgres, free_port

    tmp = Path(tempfile.mkdtemp(prefix="airtrain-bench-shards-"))
    pg = LocalPostgres(tmp / "pg", free_port(), secrets.token_hex(8))
    pg.start()
    try:
        pg.create_database("bench")
        url = pg.url("bench")
        setup(url)
        spec = load_spec(ROOT / "include/pipelines/churn.yaml")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute('TRUNCATE "features"."churn"')
            cur.execute(_features_sql(spec, args.rows))
        conn.close()
        conn = psycopg2.connect(url)
        conn.autocommit = True
        conn.cursor().execute("VACUUM ANALYZE features.churn")
        conn.close()
        results = []
        for n in [int(s) for s in args.shards.split(",")]:
            print(f"== {args.rows:,} rows in {n} shard(s)", flush=True)
            results.append(measure(url, args.rows, n))
            print(results[-1], flush=True)
        from bench_report import replace_section  # type: ignore[import-not-found]

        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        replace_section(Path(args.out), "shards", render(results, args.rows, machine))
        (ROOT / ".local").mkdir(exist_ok=True)
        (ROOT / ".local" / "bench-shards.json").write_text(json.dumps(results, indent=1))
    finally:
        pg.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
