"""``make demo DEMO_ARGS="--scenario canary"``: a canary graduation through real DAG runs.

The concept changes on day ``history_days`` (simulate's ``concept`` drift); the champion was trained
before. A few days later a retrain (forced, as a person would after the drift alert) trains a
challenger on the new concept; with ``rollout.strategy: canary`` it becomes the candidate for 30%
of the customers. Then every day the retrain DAG scores both arms and the monitor DAG compares them
on the labels that arrived (one day late), until the canary graduates. Prints a per-day table (rows
and realized AUC per arm, the interval, the decision) and writes a chart with both arms.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

CANARY_OVERRIDES: dict[str, Any] = {
    "target": {"label_delay_days": 1},
    # a 6-day window: the challenger trained six days after the change learns the new concept only
    "training": {"cadence": "on_trigger", "holdout_days": 2, "window_days": 6, "min_rows": 2000},
    # a lenient gate: the canary decides (without a tolerance the primary metric may not be worse at all)
    "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.55, "max_regression_abs": 1.0}]},
    "rollout": {"strategy": "canary", "canary_fraction": 0.3, "min_labeled": 400, "max_days": 10},
}


def realized_per_arm(wh, spec, day: dt.date) -> dict[str, tuple[int, float | None]]:
    """Rows and realized AUC of each arm's predictions of ``day`` (all labels known by now)."""
    from airtrain.model.evaluation import compute_metrics
    from airtrain.warehouse.connection import read_frame
    from psycopg2 import sql

    ps, pt = spec.table("predictions")
    ls, lt = spec.table("labels")
    df = read_frame(wh, sql.SQL("SELECT p.arm, p.score, l.{y} AS y FROM {p} p JOIN {l} l ON l.{k} = p.{k} "
                                "AND l.{d} = p.as_of_date WHERE p.as_of_date = %s").format(
        y=sql.Identifier(spec.target.name), p=sql.Identifier(ps, pt), l=sql.Identifier(ls, lt),
        k=sql.Identifier(spec.entity_key), d=sql.Identifier(spec.date_column)), (day,))
    out = {}
    for arm, g in df.groupby("arm"):
        auc = compute_metrics(g["y"].to_numpy(), g["score"].to_numpy(float), ["roc_auc"], 0.5).get("roc_auc")
        out[str(arm)] = (len(g), auc)
    return out


def run(wh, project_root: Path, spec_dir: Path, *, history_days: int = 12, days: int = 10, rows: int = 2000,
        seed: int = 42, progress=print) -> dict[str, Any]:
    import pandas as pd
    from airtrain.registry import champions
    from airtrain.simulate import Scenario, load_labels, simulate_day, write_landing_file
    from airtrain.steps.schema import apply_schema
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag
    from airtrain_airflow.runtime import spec_for

    from airtrain_dev.demo import _run, write_demo_spec

    t0 = time.monotonic()
    src = spec_dir / "churn.yaml"
    write_demo_spec(src, spec_dir, CANARY_OVERRIDES)
    spec = spec_for("churn")
    apply_schema(wh, spec)
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    start = end - dt.timedelta(days=history_days + 6 + days - 1)
    sc = Scenario("canary", drift="concept", drift_start=history_days)
    landing = project_root / spec.source.path
    progress(f"simulating {history_days + 6 + days} days (the concept changes on day {history_days}) into {landing}")
    labels = []
    for i in range(history_days + 6 + days):
        d = start + dt.timedelta(days=i)
        feats, lab = simulate_day(d, scenario=sc, seed=seed, rows=rows, start=start, label_delay_days=1)
        write_landing_file(feats, landing, d, spec.source.format)
        labels.append(lab)
    load_labels(wh, pd.concat(labels, ignore_index=True), spec.labels.schema_, spec.labels.table)
    boot_end = start + dt.timedelta(days=history_days - 1)
    progress(f"bootstrap: {spec.retrain_dag_id} over {start}..{boot_end} (the champion, old concept)")
    state, tasks = _run(lambda: build_retrain_dag(spec), {"date": str(start), "end_date": str(boot_end),
                                                           "force_train": True, "trigger_reason": "demo bootstrap"})
    if state != "success":
        raise RuntimeError(f"bootstrap failed: {tasks}")
    for i in range(history_days, history_days + 6):  # the new concept: scored by the old champion
        _run(lambda: build_retrain_dag(spec), {"date": str(start + dt.timedelta(days=i))})
    first = start + dt.timedelta(days=history_days + 6)
    progress(f"retrain {first}: a challenger on the new concept (force_train) → canary candidate")
    state, tasks = _run(lambda: build_retrain_dag(spec), {"date": str(first), "force_train": True,
                                                           "trigger_reason": "demo: the concept changed"})
    table: list[dict[str, Any]] = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        if i:
            _run(lambda: build_retrain_dag(spec), {"date": str(day)})
        _run(lambda: build_monitor_dag(spec), {"date": str(day)})
        from airtrain.warehouse.connection import read_frame
        from psycopg2 import sql

        ev = read_frame(wh, sql.SQL("SELECT decision, n_candidate, n_champion, ci_low, ci_high FROM "
                                    "monitoring.canary_evaluations WHERE pipeline = 'churn' AND evaluated_on = %s"),
                        (day,))
        row = {"date": day, "champion": champions.champion_version(wh, spec),
               **({} if ev.empty else ev.iloc[0].to_dict())}
        table.append(row)
        progress(f"day {i + 1:>2}/{days} {day}: {row.get('decision') or '-'} (champion v{row['champion']})")
    for row in table:  # every label is known by now: the realized AUC of each arm's predictions per day
        arms = realized_per_arm(wh, spec, row["date"])
        row.update({f"{a}_rows": n for a, (n, _) in arms.items()}, **{f"{a}_auc": v for a, (_, v) in arms.items()})
    return {"table": table, "seconds": round(time.monotonic() - t0, 1), "first": first}


def render(table: list[dict[str, Any]]) -> str:
    head = (f" day {'date':10} {'champ lab.':>10} {'champ AUC':>9} {'cand lab.':>9} {'cand AUC':>8} "
            f"{'labeled c/h':>11} {'interval':>17} {'decision':9} {'champion':>8}")
    lines = [head, "---" + "-" * (len(head) - 3)]
    for i, r in enumerate(table, 1):
        def f(v: Any, w: int, p: str = ".3f") -> str:
            return f"{v:{w}{p}}" if isinstance(v, float) and v == v else f"{'-':>{w}}"
        interval = (f"[{r['ci_low']:+.3f},{r['ci_high']:+.3f}]" if isinstance(r.get("ci_low"), float)
                    and r["ci_low"] == r["ci_low"] else "-")
        labeled = f"{int(r['n_candidate'])}/{int(r['n_champion'])}" if r.get("n_candidate") is not None else "-"
        lines.append(f"  {r['date'].isoformat():10} {r.get('champion_rows', 0):>10} {f(r.get('champion_auc'), 9)} "
                     f"{r.get('candidate_rows', 0):>9} {f(r.get('candidate_auc'), 8)} {labeled:>11} {interval:>17} "
                     f"{str(r.get('decision') or '-'):9} {'v' + str(r['champion']):>8}  (day {i})")
    return "\n".join(lines)


def chart_png(table: list[dict[str, Any]]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["date"] for r in table]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    ax.plot(x, [r.get("champion_auc") for r in table], marker="o", color="#264653", label="champion arm")
    ax.plot(x, [r.get("candidate_auc") for r in table], marker="s", color="#e76f51", label="candidate arm")
    for r in table:
        if r.get("decision") in ("graduate", "abort"):
            ax.axvline(r["date"], color="#2a9d8f" if r["decision"] == "graduate" else "#e63946", ls="--")
            ax.text(r["date"], ax.get_ylim()[1], f" {r['decision']}", va="top", fontsize=8)
    ax.set_ylabel("realized AUC of the day's predictions")
    ax.set_title("churn: canary rollout, realized AUC per arm")
    ax.legend(loc="lower right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def main(args: Any) -> int:
    from airtrain.spec import spec_dir
    from airtrain_airflow.runtime import spec_for, warehouse_for
    from airtrain_airflow.storage import project_root, report_store

    wh = warehouse_for(spec_for(args.pipeline))
    out = run(wh, project_root(), spec_dir(), days=min(args.days, 12))
    print()
    print(render(out["table"]))
    png = chart_png(out["table"])
    if args.out:
        path = Path(args.out) / "demo" / "churn_canary.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        loc = str(path)
    else:
        loc = report_store().save_bytes("churn", "demo_canary.png", png)
        report_store().save_bytes("churn", "demo_canary.json", json.dumps(out, default=str, indent=1).encode())
    print(f"chart: {loc}")
    print(f"took {out['seconds']:.0f}s")
    return 0
