"""Benchmarks behind `make bench`; writes docs/BENCHMARKS.md.

Every figure is measured in the same run, on the same throw-away PostgreSQL server, and reported
as rows/s and as a ratio to baselines measured right next to it:

* write-back: the project's path (ADBC binary COPY into a stage table + primary key + partition
  swap, :mod:`airtrain.serving.scoring`) vs (a) ``pandas.DataFrame.to_sql`` of the same frame into an
  identically indexed table and (b) the server-side limit, ``INSERT ... SELECT`` of the same number
  of rows inside PostgreSQL into an identically indexed table;
* end-to-end scoring: features streamed out, scored with a trained churn model, written back;
* peak memory: each size runs in a fresh subprocess; its peak RSS is reported.

    python bench/run.py                  # 1M and 10M rows (several minutes)
    python bench/run.py --sizes 100000   # quick
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
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "dev")]

AS_OF = dt.date(2026, 6, 1)


def _features_sql(spec, n: int) -> str:
    """Server-side generation of n plausible churn feature rows for AS_OF."""
    from airtrain.warehouse.connection import ident  # noqa: F401 - identifiers below are fixed, allow-listed names

    schema, table = spec.table("features")
    return f"""
    INSERT INTO "{schema}"."{table}" (customer_id, as_of_date, tenure_months, monthly_charges, total_charges,
        num_support_tickets, senior_citizen, contract_type, payment_method, internet_service, region, _run_id)
    SELECT g, DATE '{AS_OF}', (random() * 72)::int, 18 + random() * 100, random() * 7000,
        (random() * 6)::int, random() < 0.16,
        (ARRAY['month_to_month','one_year','two_year'])[1 + (random() * 2.99)::int],
        (ARRAY['electronic_check','mailed_check','bank_transfer','credit_card'])[1 + (random() * 3.99)::int],
        (ARRAY['dsl','fiber','none'])[1 + (random() * 2.99)::int],
        (ARRAY['north','south','east','west'])[1 + (random() * 3.99)::int], 'bench'
    FROM generate_series(1, {int(n)}) g"""  # noqa: S608 - constants only


def child(url: str, n: int, mode: str, with_to_sql: bool) -> dict:
    """One size and mode, in its own process (so peak RSS is this measurement's)."""
    import numpy as np
    import pandas as pd
    import psycopg2
    import pyarrow as pa
    from airtrain.registry import champions
    from airtrain.serving import publish, scoring
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    # the plain scoring path; per-prediction explanations (scoring.explain) are measured against it
    # side by side in bench/explain.py
    spec = spec.model_copy(update={"scoring": spec.scoring.model_copy(update={"explain": None})})
    wh = Warehouse(url)
    version = champions.champion_version(wh, spec)
    out: dict = {"rows": n, "mode": mode}
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    if mode == "score":
        cur.execute('TRUNCATE "features"."churn"')
        cur.execute(_features_sql(spec, n))
        cur.execute("VACUUM ANALYZE features.churn")
        t0 = time.perf_counter()
        res = scoring.score_date(wh, spec, AS_OF, run_id="bench-e2e", model=version, shards=1)
        out["score_e2e_s"] = time.perf_counter() - t0
        assert res["rows"] == n, res
    else:
        ddl = ("CREATE TABLE {t} (customer_id bigint NOT NULL, as_of_date date NOT NULL, model_version integer NOT NULL,"
               " score double precision NOT NULL, predicted_label smallint, run_id text NOT NULL, "
               "scored_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (customer_id, as_of_date, model_version))")
        # (b) the server-side limit: INSERT ... SELECT inside PostgreSQL into an identical table
        cur.execute("DROP TABLE IF EXISTS bench_server; " + ddl.format(t="bench_server"))
        t0 = time.perf_counter()
        cur.execute("INSERT INTO bench_server (customer_id, as_of_date, model_version, score, predicted_label, run_id) "
                    "SELECT g, %s, 1, random(), (random() > 0.5)::int, 'bench' FROM generate_series(1, %s) g",
                    (AS_OF, n))
        out["server_insert_select_s"] = time.perf_counter() - t0
        cur.execute("DROP TABLE bench_server")
        rng = np.random.default_rng(0)
        scores = rng.random(n)
        frame = pd.DataFrame({"customer_id": np.arange(1, n + 1, dtype="int64"), "as_of_date": AS_OF,
                              "model_version": np.int32(version), "score": scores,
                              "predicted_label": (scores > 0.5).astype("int16"), "run_id": "bench"})
        import adbc_driver_postgresql.dbapi as adbc

        schema = pa.schema([("customer_id", pa.int64()), ("as_of_date", pa.date32()), ("model_version", pa.int32()),
                            ("score", pa.float64()), ("predicted_label", pa.int16()), ("run_id", pa.string())])
        target = scoring.begin(wh, spec, AS_OF, version)
        t0 = time.perf_counter()
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        with adbc.connect(wh.adbc_uri()) as ac:
            with ac.cursor() as acur:
                acur.adbc_ingest(target.stage, pa.RecordBatchReader.from_batches(
                    schema, table.to_batches(max_chunksize=100_000)), mode="append", db_schema_name=target.schema)
            ac.commit()
        publish.publish(wh, spec, target, n)
        out["writeback_s"] = time.perf_counter() - t0
        del table
        if with_to_sql:  # (a) pandas.to_sql of the same frame into an identical table
            from sqlalchemy import create_engine

            cur.execute("DROP TABLE IF EXISTS bench_to_sql; " + ddl.format(t="bench_to_sql"))
            engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
            t0 = time.perf_counter()
            frame.to_sql("bench_to_sql", engine, if_exists="append", index=False, chunksize=50_000)
            out["to_sql_s"] = time.perf_counter() - t0
            cur.execute("DROP TABLE bench_to_sql")
            engine.dispose()
    conn.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def setup(url: str) -> None:
    """Schema + a trained champion from simulated data (the real training path)."""
    from airtrain.spec import load_spec
    from airtrain.steps.schema import apply_schema
    from airtrain.warehouse.connection import Warehouse

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    wh = Warehouse(url)
    apply_schema(wh, spec)
    from bench_setup import train_champion  # type: ignore[import-not-found]

    train_champion(wh, spec)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--to-sql-max", type=int, default=10_000_000, help="skip to_sql above this size")
    ap.add_argument("--child", nargs=2, metavar=("N", "MODE"), help="(internal) the URL is $WAREHOUSE_URL")
    ap.add_argument("--to-sql", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(os.environ["WAREHOUSE_URL"], int(args.child[0]), args.child[1],
                                           args.to_sql)))
        return 0
    from airtrain_dev.localpg import LocalPostgres, free_port

    tmp = Path(tempfile.mkdtemp(prefix="airtrain-bench-"))
    pg = LocalPostgres(tmp / "pg", free_port(), secrets.token_hex(8))
    pg.start()
    try:
        pg.create_database("bench")
        url = pg.url("bench")
        sys.path.insert(0, str(ROOT / "bench"))
        setup(url)
        results = []
        for n in [int(s) for s in args.sizes.split(",")]:
            merged: dict = {"rows": n}
            for mode in ("writeback", "score"):
                cmd = [sys.executable, __file__, "--child", str(n), mode]  # the URL: environment, never argv
                if mode == "writeback" and n <= args.to_sql_max:
                    cmd.append("--to-sql")
                print(f"== {n:,} rows: {mode}", flush=True)
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT / "include"), "WAREHOUSE_URL": url})
                if proc.returncode != 0:
                    from airtrain.warehouse.redaction import redact_text

                    print(redact_text(proc.stderr[-4000:]), file=sys.stderr)
                    return 1
                res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
                print(res, flush=True)
                rss = res.pop("peak_rss_mb")
                merged.update(res)
                merged[f"{mode}_rss_mb"] = rss
            results.append(merged)
        write_report(Path(args.out), results)
    finally:
        pg.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def write_report(path: Path, results: list[dict]) -> None:
    from bench_report import render, replace_section  # type: ignore[import-not-found]

    section = render(results, machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    replace_section(path, "writeback", section)


if __name__ == "__main__":
    raise SystemExit(main())
