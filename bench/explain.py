"""Cost of explanations and fairness at evaluation (part of `make bench`).

Trains the demo spec's model (include/pipelines/churn.yaml: HistGradientBoosting, 9 features) on
simulated days, then times on a holdout of N rows, in one process, side by side:

* **evaluation** (baseline) - :func:`airtrain.model.evaluation.evaluate`: scores and metrics overall and
  per slice, what ``evaluate`` always did for one model;
* **importance** - :func:`airtrain.model.explain.permutation_importances` on the seeded sample of
  ``explain.importance_rows`` rows with ``explain.importance_repeats`` shuffles per feature;
* **fairness** - scoring + :func:`airtrain.model.fairness.evaluate` (one fairlearn MetricFrame per
  sensitive attribute, ``fairness.sensitive`` of the spec).

The ``evaluate`` task does each once per model (challenger and, when there is one, the champion).
Writes the table between the ``explain`` markers of docs/BENCHMARKS.md.

Then **per-prediction explanations at scoring** (``scoring.explain``): on a throw-away PostgreSQL
server, one date of N feature rows is scored end to end (:func:`airtrain.serving.scoring.score_date`:
features streamed out by ADBC, scored, ADBC COPY into the stage table, primary key, partition swap)
with explanations off (the baseline) and on (``top_k`` of the churn spec), each in a fresh process
(its peak RSS), side by side in the same run. Written between the ``explain_scoring`` markers.

    python bench/explain.py                       # holdouts of 2,000 and 14,000 rows; scoring 100k and 1M
    python bench/explain.py --scoring-sizes 100000 --skip-evaluation
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "dev"), str(ROOT / "bench")]
os.environ.setdefault("OMP_NUM_THREADS", "1")


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(sizes: list[int]) -> list[dict]:
    import pandas as pd
    from airtrain import simulate
    from airtrain.data.features import coerce_features
    from airtrain.model import explain, fairness, training
    from airtrain.model.evaluation import evaluate, predict_scores
    from airtrain.spec import load_spec

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    start = dt.date(2026, 1, 1)
    frames = []
    for i in range(14):
        f, lab = simulate.simulate_day(start + dt.timedelta(days=i), rows=1000, start=start)
        frames.append(f.assign(churned=lab["churned"].to_numpy()))
    train = coerce_features(pd.concat(frames, ignore_index=True), spec)
    model = training.train(spec, train).model
    out = []
    for n in sizes:
        days = []
        for i in range(max(1, n // 2000)):
            f, lab = simulate.simulate_day(start + dt.timedelta(days=30 + i), rows=min(n, 2000), start=start)
            days.append(f.assign(churned=lab["churned"].to_numpy()))
        hold = coerce_features(pd.concat(days, ignore_index=True).head(n), spec)
        y = hold["churned"].to_numpy()
        base = best_of(lambda h=hold: evaluate(model, h, spec))
        imp = best_of(lambda h=hold: explain.permutation_importances(model, explain.sample_rows(h, spec), spec))
        fair = best_of(lambda h=hold, y=y: fairness.evaluate(y, predict_scores(model, h, spec), h, spec))
        out.append({"rows": len(hold), "evaluation": base, "importance": imp, "fairness": fair})
    return out


def write(results: list[dict]) -> None:
    from airtrain.spec import load_spec

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    lines = ["<!-- explain:start -->", "## Explanations and fairness at evaluation", "",
             f"Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, one OpenMP thread (`python bench/explain.py`). The demo model "
             f"(HistGradientBoosting, {len(spec.model_feature_names)} features) on a holdout of N rows; best of 3 "
             "seconds per model, and the ratio to the plain evaluation measured side by side.", "",
             "| holdout rows | evaluation (s) | permutation importance (s) | × evaluation | fairness (s) | "
             "× evaluation |", "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['evaluation']:.2f} | {r['importance']:.2f} | "
                     f"{r['importance'] / r['evaluation']:.1f}× | {r['fairness']:.2f} | "
                     f"{r['fairness'] / r['evaluation']:.1f}× |")
    lines += ["", f"* **evaluation**: `airtrain.model.evaluation.evaluate` (scores, {len(spec.evaluation.metrics)} metrics "
              f"overall and per slice of {spec.evaluation.slices}).",
              f"* **permutation importance**: `explain.importance_rows` = {spec.explain.importance_rows} sampled rows "
              f"× `explain.importance_repeats` = {spec.explain.importance_repeats} shuffles × each feature: a "
              "fixed cost, independent of the holdout size.",
              f"* **fairness**: scoring + one fairlearn `MetricFrame` per attribute of `fairness.sensitive` "
              f"({spec.fairness.sensitive if spec.fairness else []}); grows with the holdout (O(n) Python work "
              "in fairlearn).",
              "* `evaluate` pays each once per model (challenger, and the champion when there is one).",
              "<!-- explain:end -->"]
    doc = ROOT / "docs/BENCHMARKS.md"
    text = doc.read_text()
    block = "\n".join(lines)
    if "<!-- explain:start -->" in text:
        text = re.sub(r"<!-- explain:start -->.*?<!-- explain:end -->", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def scoring_child(url: str, n: int, mode: str) -> dict:
    """Score one date of ``n`` rows with explanations ``mode`` ("off"/"on"), in its own process."""
    import psycopg2
    from airtrain.registry import champions
    from airtrain.serving import scoring
    from airtrain.spec import load_spec
    from airtrain.warehouse.connection import Warehouse
    from run import AS_OF, _features_sql  # type: ignore[import-not-found]

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    if spec.scoring.explain is None:
        raise SystemExit("include/pipelines/churn.yaml has no scoring.explain to measure")
    if mode == "off":
        spec = spec.model_copy(update={"scoring": spec.scoring.model_copy(update={"explain": None})})
    wh = Warehouse(url)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM features.churn WHERE as_of_date = %s", (AS_OF,))
        if cur.fetchone()[0] != n:
            cur.execute("DELETE FROM features.churn WHERE as_of_date = %s", (AS_OF,))
            cur.execute(_features_sql(spec, n))
            cur.execute("VACUUM ANALYZE features.churn")
    t0 = time.perf_counter()
    res = scoring.score_date(wh, spec, AS_OF, run_id=f"bench-{mode}", model=champions.champion_version(wh, spec),
                             shards=1)
    seconds = time.perf_counter() - t0
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(explain_features) FROM predictions.churn WHERE as_of_date = %s",
                    (AS_OF,))
        rows, explained = cur.fetchone()
    conn.close()
    if res["rows"] != n or rows != n or explained != (n if mode == "on" else 0):
        raise SystemExit(f"scoring {mode}: {res}, {rows} rows, {explained} explained; expected {n}")
    return {"rows": n, "mode": mode, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_scoring(sizes: list[int]) -> list[dict]:
    from airtrain.spec import load_spec
    from airtrain.steps.schema import apply_schema
    from airtrain.warehouse.connection import Warehouse
    from airtrain_dev.localpg import LocalPostgres, free_port
    from bench_setup import train_champion  # type: ignore[import-not-found]

    tmp = Path(tempfile.mkdtemp(prefix="airtrain-bench-explain-"))
    pg = LocalPostgres(tmp / "pg", free_port(), secrets.token_hex(8))
    pg.start()
    out = []
    try:
        pg.create_database("bench")
        url = pg.url("bench")
        spec = load_spec(ROOT / "include/pipelines/churn.yaml")
        wh = Warehouse(url)
        apply_schema(wh, spec)
        train_champion(wh, spec)
        for n in sizes:
            row: dict = {"rows": n}
            # side by side, same data, same server; small sizes alternate twice (best of 2: less noise)
            for _ in range(2 if n <= 200_000 else 1):
                for mode in ("off", "on"):
                    print(f"== scoring {n:,} rows, explanations {mode}", flush=True)
                    proc = subprocess.run([sys.executable, __file__, "--scoring-child", str(n), mode],
                                          capture_output=True, text=True,  # the URL: environment, never argv
                                          env={**os.environ, "PYTHONPATH": str(ROOT / "include"),
                                               "WAREHOUSE_URL": url})
                    if proc.returncode != 0:
                        from airtrain.warehouse.redaction import redact_text

                        raise RuntimeError(redact_text(proc.stderr[-4000:]))
                    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
                    print(res, flush=True)
                    if res["seconds"] < row.get(f"{mode}_s", float("inf")):
                        row[f"{mode}_s"], row[f"{mode}_rss_mb"] = res["seconds"], res["peak_rss_mb"]
            out.append(row)
    finally:
        pg.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_scoring(results: list[dict]) -> None:
    from airtrain.spec import load_spec
    from bench_report import replace_section  # type: ignore[import-not-found]

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    k = spec.scoring.explain.top_k if spec.scoring.explain else "?"
    lines = ["## Per-prediction explanations at scoring", "",
             f"Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, one OpenMP thread (`python bench/explain.py`). One date of N rows "
             "scored end to end by `airtrain.serving.scoring.score_date` (ADBC read, HistGradientBoosting "
             f"`predict_proba`, ADBC COPY into the stage table, primary key, partition swap), one shard, with "
             f"`scoring.explain` off and on (`top_k: {k}`, baseline substitution over "
             f"{len(spec.model_feature_names)} model inputs), each in a fresh process, side by side on the same "
             "server and data.", "",
             "| rows | explanations off (rows/s) | on (rows/s) | × slower than off | peak RSS off (MB) | "
             "peak RSS on (MB) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['rows'] / r['off_s']:,.0f} | {r['rows'] / r['on_s']:,.0f} | "
                     f"{r['on_s'] / r['off_s']:.1f}× | {r['off_rss_mb']:.0f} | {r['on_rss_mb']:.0f} |")
    lines += ["", "* The cost is the extra `predict_proba` calls: one per model input, each only on the rows "
              "whose value differs from the training reference (categories and booleans at their most frequent "
              "value cost nothing), so at most (inputs + 1)× the model's scoring time; the write-back itself "
              "adds two array columns.",
              "* Memory stays bounded by `scoring.batch_rows` (one batch and one substituted copy at a time)."]
    replace_section(ROOT / "docs/BENCHMARKS.md", "explain_scoring", "\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 14000])
    ap.add_argument("--scoring-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--skip-evaluation", action="store_true")
    ap.add_argument("--scoring-child", nargs=2, metavar=("N", "MODE"), help="(internal) the URL is $WAREHOUSE_URL")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.scoring_child:
        n, mode = args.scoring_child
        print("RESULT " + json.dumps(scoring_child(os.environ["WAREHOUSE_URL"], int(n), mode)))
        return 0
    if not args.skip_evaluation:
        results = measure(args.sizes)
        for r in results:
            print(r)
        if not args.no_write:
            write(results)
    scored = measure_scoring(args.scoring_sizes)
    if not args.no_write:
        write_scoring(scored)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
