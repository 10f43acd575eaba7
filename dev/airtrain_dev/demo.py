"""A simulated month through real Airflow DAG runs: what ``make demo`` shows and what the
end-to-end tests check.

The month: ``history_days`` of stable data to train the first champion, then ``days`` days run one
by one like production would: each day the retrain DAG (ingest → validate → score; training only
when asked, ``training.cadence: on_trigger``) and then the monitor DAG. When the monitor triggers a
retrain, Airflow records the triggered run (``drift__<window_end>``, queued for the scheduler); the
demo has no scheduler, so it runs that retrain in-process with the triggered run's conf.

Every run is a real ``dag.test()`` run (tasks, XComs, trigger rules, retries) against a real
Postgres warehouse. Labels arrive ``label_delay_days`` after each day (1 by default, so the month can
show the realized AUC and a retrain that learns from the drifted days).

Command line (what ``make demo`` runs, inside the demo environment it prepares):
``python -m airtrain_dev.demo --days 30 --scenario covariate_drift``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: spec changes the month runs with (on top of include/pipelines/<name>.yaml)
#: - training only when the monitor (or a person) asks for it, so the month shows drift-triggered retrains;
#: - a 2-day holdout, so the retrain's gate compares challenger and champion on days that already drifted;
#: - three consecutive drifted daily windows before a retrain, and a 14-day cooldown after one.
DEMO_OVERRIDES: dict[str, Any] = {
    "training": {"cadence": "on_trigger", "holdout_days": 2},
    "monitoring": {"trigger": {"persistence": 3, "cooldown_days": 14}},
}


def write_demo_spec(src: Path, dst_dir: Path, overrides: dict[str, Any] | None = None) -> Path:
    """Copy a pipeline spec to ``dst_dir`` with ``overrides`` merged in (nested dicts merge)."""
    data = yaml.safe_load(src.read_text())

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            # an estimator's params belong to that estimator: a new set replaces the old one whole
            deep = k not in ("params", "param_grid") and isinstance(v, dict) and isinstance(out.get(k), dict)
            out[k] = merge(out[k], v) if deep else v
        return out

    data = merge(data, overrides if overrides is not None else DEMO_OVERRIDES)
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    dst.write_text("# written by airtrain_dev.demo from " + src.name + "\n" + yaml.safe_dump(data, sort_keys=False))
    return dst


@dataclass
class Day:
    date: dt.date
    rows_ingested: int = 0
    rows_quarantined: int = 0
    blocked: bool = False
    predictions: int = 0
    drift_share: float | None = None
    decision: str = ""
    reason: str = ""
    champion: int | None = None
    auc: float | None = None
    retrain: dict[str, Any] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["date"] = self.date.isoformat()
        return d


@dataclass
class Month:
    pipeline: str
    scenario: str
    start: dt.date
    history_days: int
    days: list[Day] = field(default_factory=list)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    triggered_runs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chart: str | None = None

    def table(self) -> str:
        head = (f"{'day':>3} {'date':10} {'ingested':>8} {'quarant.':>8} {'preds':>6} {'drift':>6} "
                f"{'decision':17} {'champion':>8} {'AUC':>6}")
        lines = [head, "-" * len(head)]
        for i, d in enumerate(self.days, 1):
            share = "" if d.drift_share is None else f"{d.drift_share:.0%}"
            auc = "" if d.auc is None else f"{d.auc:.3f}"
            lines.append(f"{i:>3} {d.date.isoformat():10} {d.rows_ingested:>8} {d.rows_quarantined:>8} "
                         f"{d.predictions:>6} {share:>6} {d.decision[:17]:17} {('v' + str(d.champion)) if d.champion else '-':>8} "
                         f"{auc:>6}")
        return "\n".join(lines)


def _spec(name: str):
    from airtrain_airflow.runtime import spec_for

    return spec_for(name)


def _run(build: Callable[[], Any], conf: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """One dag.test() run of a freshly built DAG (a DAG object keeps the params of its last test run)."""
    dr = build().test(logical_date=dt.datetime.now(dt.UTC), run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    return str(dr.state), states


def queued_trigger_conf(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The conf of the run the monitor triggered (None if no such run was created)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        return dict(dr.conf or {}) if dr is not None else None


def count_runs(dag_id: str, run_id: str) -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).count()


def _one(wh, query, params) -> Any:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    return row[0] if row else None


def day_facts(wh, spec, day: Day) -> None:
    """Fill a day's counts from the warehouse (what a person would query)."""
    from airtrain.registry import champions
    from airtrain.warehouse.connection import ident
    from psycopg2 import sql

    mon = spec.warehouse.monitoring_schema
    day.rows_ingested = int(_one(wh, sql.SQL("SELECT rows FROM {} WHERE pipeline = %s AND partition_date = %s").format(
        ident(mon, "ingest_runs")), (spec.name, day.date)) or 0)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT rows_quarantined, blocked FROM {} WHERE pipeline = %s AND partition_date = %s"
                            ).format(ident(mon, "validation_runs")), (spec.name, day.date))
        row = cur.fetchone()
        cur.execute(sql.SQL("SELECT decision, reason, drift_share FROM {} WHERE pipeline = %s AND window_end = %s"
                            ).format(ident(mon, "drift_decisions")), (spec.name, day.date))
        dec = cur.fetchone()
    if row:
        day.rows_quarantined, day.blocked = int(row[0]), bool(row[1])
    if dec:
        day.decision, day.reason, day.drift_share = dec[0], dec[1], dec[2]
    day.champion = champions.champion_version(wh, spec)
    ps, pt = spec.table("predictions")
    day.predictions = int(_one(wh, sql.SQL("SELECT count(*) FROM {} WHERE as_of_date = %s AND model_version = %s").format(
        ident(ps, pt)), (day.date, day.champion or 0)) or 0)


def realized_auc(wh, spec, date: dt.date, version: int | None) -> float | None:
    """AUC of ``version``'s stored predictions of ``date`` against the labels (known by now)."""
    import numpy as np
    from airtrain.model.evaluation import compute_metrics
    from airtrain.warehouse.connection import ident
    from psycopg2 import sql

    if version is None:
        return None
    ps, pt = spec.table("predictions")
    src = spec.labels
    key = ident(spec.entity_key)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT p.score, l.{t} FROM {p} p JOIN {l} l ON l.{k} = p.{k} AND l.{d} = p.as_of_date "
                            "WHERE p.as_of_date = %s AND p.model_version = %s").format(
            t=ident(spec.target.name), p=ident(ps, pt), l=ident(src.schema_, src.table), k=key,
            d=ident(spec.date_column)), (date, version))
        rows = cur.fetchall()
    if len(rows) < 50:
        return None
    arr = np.asarray(rows, dtype="float64")
    return compute_metrics(arr[:, 1], arr[:, 0], ["roc_auc"], 0.5).get("roc_auc")


def run_month(wh, project_root: Path, *, pipeline: str = "churn", scenario: str = "covariate_drift",
              history_days: int = 30, days: int = 30, drift_day: int = 20, seed: int = 42, rows: int = 2000,
              label_delay_days: int = 1, end: dt.date | None = None,
              progress: Callable[[str], None] = print) -> Month:
    """Simulate the data, then run the DAGs day by day. The caller has pointed AIRTRAIN_SPEC_DIR,
    AIRTRAIN_PROJECT_ROOT and AIRFLOW_CONN_WAREHOUSE at the demo's spec, folder and warehouse."""
    from airtrain.registry import champions
    from airtrain.simulate import SCENARIOS, Scenario, load_labels, simulate_day, write_landing_file
    from airtrain.steps.schema import apply_schema
    from airtrain.warehouse.connection import ident
    from airtrain_airflow.factory import build_monitor_dag, build_retrain_dag
    from psycopg2 import sql

    t_start = time.monotonic()
    spec = _spec(pipeline)
    apply_schema(wh, spec)
    end = end or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    start = end - dt.timedelta(days=history_days + days - 1)
    base = SCENARIOS[scenario]
    sc = Scenario(scenario, drift=base.drift, drift_start=(history_days + drift_day) if base.drift else None,
                  bad_days={history_days + k: v for k, v in base.bad_days.items()})
    landing = project_root / spec.source.path if spec.source.kind == "files" else None
    if landing is None:
        raise ValueError("the demo writes landing files: the pipeline's source.kind must be 'files'")
    import pandas as pd

    progress(f"simulating {history_days} + {days} days ({scenario}, drift from day {drift_day}) into {landing}")
    labels = []
    for i in range(history_days + days):
        d = start + dt.timedelta(days=i)
        feats, lab = simulate_day(d, scenario=sc, seed=seed, rows=rows, start=start, label_delay_days=label_delay_days)
        write_landing_file(feats, landing, d, spec.source.format)
        labels.append(lab)
    load_labels(wh, pd.concat(labels, ignore_index=True), spec.labels.schema_, spec.labels.table)

    def retrain():
        return build_retrain_dag(spec)

    def monitor():
        return build_monitor_dag(spec)

    month = Month(spec.name, scenario, start, history_days)
    first = start + dt.timedelta(days=history_days)
    progress(f"bootstrap: {spec.retrain_dag_id} over {start}..{first - dt.timedelta(days=1)} (first champion)")
    state, tasks = _run(retrain, {"date": start.isoformat(), "end_date": (first - dt.timedelta(days=1)).isoformat(),
                                  "force_train": True, "trigger_reason": "demo bootstrap"})
    month.bootstrap = {"state": state, "champion": champions.champion_version(wh, spec)}
    if state != "success":
        raise RuntimeError(f"bootstrap run failed: {tasks}")
    for i in range(days):
        t0 = time.monotonic()
        day = Day(first + dt.timedelta(days=i))
        r_state, r_tasks = _run(retrain, {"date": day.date.isoformat()})
        m_state, m_tasks = _run(monitor, {"date": day.date.isoformat()})
        if r_state != "success" or m_state != "success":
            progress(f"  {day.date}: retrain {r_state} {r_tasks} / monitor {m_state} {m_tasks}")
        from airtrain.monitoring.windows import retrain_run_id

        run_id = retrain_run_id(day.date)
        decided = _one(wh, sql.SQL("SELECT triggered_run_id FROM {} WHERE pipeline = %s AND window_end = %s AND "
                                   "decision = 'retrain'").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, day.date))
        conf = queued_trigger_conf(spec.retrain_dag_id, run_id) if decided == run_id else None
        if decided == run_id and conf is None:
            raise RuntimeError(f"the monitor decided to retrain for {day.date} but no {run_id} run was triggered")
        if conf is not None and run_id not in month.triggered_runs:
            month.triggered_runs.append(run_id)
            progress(f"  {day.date}: monitor triggered {spec.retrain_dag_id} run {run_id}; running it")
            before = champions.champion_version(wh, spec)
            t_state, t_tasks = _run(retrain, conf)
            after = champions.champion_version(wh, spec)
            day.retrain = {"run_id": run_id, "state": t_state, "conf": conf, "champion_before": before,
                           "champion_after": after, "tasks": t_tasks}
        day_facts(wh, spec, day)
        day.seconds = round(time.monotonic() - t0, 1)
        month.days.append(day)
        share = "" if day.drift_share is None else f" drift share {day.drift_share:.0%}"
        progress(f"day {i + 1:>2}/{days} {day.date}: {day.rows_ingested} rows, {day.rows_quarantined} quarantined,"
                 f"{share}, {day.decision}, champion v{day.champion} ({day.seconds}s)")
    for d in month.days:  # labels of every day are known by now
        d.auc = realized_auc(wh, spec, d.date, d.champion)
    month.seconds = round(time.monotonic() - t_start, 1)
    return month


def chart_png(month: Month) -> bytes:
    """PNG bytes: drift share and realized AUC per day, retrains marked."""
    import io

    buf = io.BytesIO()
    _draw(month, buf)
    return buf.getvalue()


def chart(month: Month, path: Path) -> Path:
    """PNG file: drift share and realized AUC per day, retrains marked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        _draw(month, fh)
    month.chart = str(path)
    return path


def _draw(month: Month, fh: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [d.date for d in month.days]
    fig, ax1 = plt.subplots(figsize=(10, 4.5), dpi=110)
    ax1.bar(x, [d.drift_share or 0 for d in month.days], color="#f4a261", alpha=0.7, label="drift share")
    ax1.set_ylabel("share of drifted features")
    ax1.set_ylim(0, 1)
    ax2 = ax1.twinx()
    ax2.plot(x, [d.auc for d in month.days], color="#264653", marker="o", ms=3, label="realized AUC")
    ax2.set_ylabel("AUC of the day's predictions")
    for d in month.days:
        if d.retrain:
            ax1.axvline(d.date, color="#e63946", ls="--", lw=1.2)
            ax1.text(d.date, 0.95, f" retrain → v{d.retrain['champion_after']}", color="#e63946", va="top",
                     fontsize=8)
    ax1.set_title(f"{month.pipeline}: {month.scenario}, {len(month.days)} days")
    lines = ax1.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(fh, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m airtrain_dev.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--pipeline", default="churn")
    ap.add_argument("--scenario", default="covariate_drift", choices=["stable", "covariate_drift", "concept_drift",
                                                                      "bad_batches", "canary"])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--history-days", type=int, default=30)
    ap.add_argument("--drift-day", type=int, default=20)
    ap.add_argument("--out", default=None, help="a local folder for the chart and summary (default: the report "
                    "store, AIRTRAIN_REPORTS_URL, under <pipeline>/files/)")
    args = ap.parse_args(argv)
    if args.scenario == "canary":  # a canary graduation (airtrain_dev.canary_demo)
        from airtrain_dev import canary_demo

        return canary_demo.main(args)
    from airtrain_airflow.runtime import spec_for, warehouse_for
    from airtrain_airflow.storage import project_root, report_store, reports_url

    wh = warehouse_for(spec_for(args.pipeline))
    month = run_month(wh, project_root(), pipeline=args.pipeline, scenario=args.scenario, days=args.days,
                      history_days=args.history_days, drift_day=args.drift_day)
    summary = json.dumps({"pipeline": month.pipeline, "scenario": month.scenario, "seconds": month.seconds,
                          "triggered_runs": month.triggered_runs, "days": [d.as_dict() for d in month.days]},
                         indent=1, default=str)
    stem = f"demo_{args.scenario}"
    if args.out:
        out = Path(args.out) / "demo"
        png = chart(month, out / f"{args.pipeline}_{args.scenario}.png")
        (out / f"{args.pipeline}_{args.scenario}.json").write_text(summary)
    else:  # the chart goes where the reports go (object storage when configured), not onto this host
        store = report_store()
        png = store.save_bytes(args.pipeline, f"{stem}.png", chart_png(month))
        month.chart = png
        store.save_bytes(args.pipeline, f"{stem}.json", summary.encode())
    print()
    print(month.table())
    print()
    retrains = [d for d in month.days if d.retrain]
    for d in retrains:
        r = d.retrain
        print(f"retrain {r['run_id']}: {r['state']}, champion v{r['champion_before']} → v{r['champion_after']}")
    if not retrains:
        print("no retrain was triggered")
    print(f"chart: {png}")
    print(f"reports: {Path(args.out).resolve() if args.out else reports_url()}  (drift reports under <pipeline>/drift/)")
    print(f"took {month.seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
