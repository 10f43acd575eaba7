"""Cost of explanations and fairness at evaluation (part of `make bench`).

Trains the demo spec's model (include/pipelines/churn.yaml: HistGradientBoosting, 9 features) on
simulated days, then times on a holdout of N rows, in one process, side by side:

* **evaluation** (baseline) - :func:`airtrain.evaluation.evaluate`: scores and metrics overall and
  per slice, what ``evaluate`` always did for one model;
* **importance** - :func:`airtrain.explain.permutation_importances` on the seeded sample of
  ``explain.importance_rows`` rows with ``explain.importance_repeats`` shuffles per feature;
* **fairness** - scoring + :func:`airtrain.fairness.evaluate` (one fairlearn MetricFrame per
  sensitive attribute, ``fairness.sensitive`` of the spec).

The ``evaluate`` task does each once per model (challenger and, when there is one, the champion).
Writes the table between the ``explain`` markers of docs/BENCHMARKS.md.

    python bench/explain.py                       # holdouts of 2,000 and 14,000 rows
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]
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
    from airtrain import explain, fairness, simulate, training
    from airtrain.evaluation import evaluate, predict_scores
    from airtrain.spec import load_spec
    from airtrain.steps import coerce_features

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
    lines += ["", f"* **evaluation**: `airtrain.evaluation.evaluate` (scores, {len(spec.evaluation.metrics)} metrics "
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 14000])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    results = measure(args.sizes)
    for r in results:
        print(r)
    if not args.no_write:
        write(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
