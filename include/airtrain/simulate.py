"""Simulated daily customer snapshots for the churn demo, with drift and bad-data scenarios.

Deterministic: a day's batch depends only on (seed, scenario, date) — each day draws from its own
``numpy`` generator seeded by ``SeedSequence([seed, ordinal(date)])`` — so any subset of days, in
any order, gives byte-identical batches.

Scenarios (:data:`SCENARIOS`): ``stable``; ``covariate_drift`` (from ``drift_start`` on, charges
shift up and month-to-month/fiber customers become more common; the churn mechanism stays the
same, so a retrained model recovers); ``concept_drift`` (from ``drift_start`` on, the churn
mechanism changes); ``bad_batches`` (given days carry one kind of bad data, see :data:`BAD_KINDS`);
``group_disparity`` (batches carry a sensitive attribute ``age_band`` and customers under 30 churn
more: a real disparity for the fairness metrics and gates).

Command line: ``python -m airtrain.simulate --landing data/landing/churn --days 100 --end-today
--scenario stable --url postgresql://...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg2 import sql

from airtrain.warehouse.connection import Warehouse, ident

CONTRACTS = np.array(["month_to_month", "one_year", "two_year"])
PAYMENTS = np.array(["electronic_check", "mailed_check", "bank_transfer", "credit_card"])
INTERNET = np.array(["dsl", "fiber", "none"])
REGIONS = np.array(["north", "south", "east", "west"])
FEATURES = ["tenure_months", "monthly_charges", "total_charges", "num_support_tickets", "senior_citizen",
            "contract_type", "payment_method", "internet_service", "region"]
BAD_KINDS = ("nulls", "out_of_range", "unknown_category", "wrong_type", "duplicate_keys", "missing_column", "empty")
POOL = 1_000_000  # customer ids are drawn from 1..POOL


@dataclass(frozen=True)
class Scenario:
    name: str
    drift: str | None = None  # None | "covariate" | "concept"
    drift_start: int | None = None  # day index (0 = simulation start) from which drift applies
    drift_strength: float = 1.0
    bad_days: dict[int, str] = field(default_factory=dict)  # day index -> bad kind
    #: > 0: the batch carries the sensitive attribute ``age_band`` and customers under 30 churn more
    #: (this much added to their churn log-odds): a real disparity between groups (fairness demo)
    group_bias: float = 0.0


SCENARIOS: dict[str, Scenario] = {
    "stable": Scenario("stable"),
    "covariate_drift": Scenario("covariate_drift", drift="covariate", drift_start=20),
    "concept_drift": Scenario("concept_drift", drift="concept", drift_start=20),
    "bad_batches": Scenario("bad_batches", bad_days={3: "nulls", 5: "out_of_range", 7: "unknown_category",
                                                    9: "wrong_type", 11: "duplicate_keys", 13: "missing_column",
                                                    15: "empty"}),
    "group_disparity": Scenario("group_disparity", group_bias=1.2),
}
AGE_BANDS = np.array(["under_30", "30_to_64", "65_plus"])


def age_band(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The sensitive attribute of the ``group_disparity`` scenario: seniors are 65_plus; the others
    are under_30 more often the shorter their tenure (so it correlates with model features too)."""
    tenure = df["tenure_months"].to_numpy(float)
    p_young = np.clip(0.55 - tenure / 120, 0.1, 0.6)
    young = rng.random(len(df)) < p_young
    return np.where(df["senior_citizen"].to_numpy(bool), "65_plus", np.where(young, "under_30", "30_to_64"))


def _rng(seed: int, date: dt.date, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, date.toordinal(), stream]))


def _day_index(date: dt.date, start: dt.date | None) -> int:
    return (date - start).days if start is not None else 0


def _drifting(scenario: Scenario, date: dt.date, start: dt.date | None) -> float:
    """0 before the drift starts, then ramping to drift_strength over 3 days."""
    if scenario.drift is None or scenario.drift_start is None or start is None:
        return 0.0
    days_in = _day_index(date, start) - scenario.drift_start
    if days_in < 0:
        return 0.0
    return scenario.drift_strength * min(1.0, (days_in + 1) / 3)


def churn_probability(df: pd.DataFrame, concept: float = 0.0) -> np.ndarray:
    """The true churn mechanism (logistic); ``concept`` in [0, 1] blends in a different one."""
    mtm = (df["contract_type"] == "month_to_month").to_numpy(float)
    two = (df["contract_type"] == "two_year").to_numpy(float)
    fiber = (df["internet_service"] == "fiber").to_numpy(float)
    echeck = (df["payment_method"] == "electronic_check").to_numpy(float)
    tenure = df["tenure_months"].to_numpy(float)
    charges = df["monthly_charges"].to_numpy(float)
    tickets = df["num_support_tickets"].to_numpy(float)
    senior = df["senior_citizen"].to_numpy(float)
    z_old = (-2.2 + 1.3 * mtm - 1.0 * two + 0.6 * fiber + 0.5 * echeck - 0.035 * tenure
             + 0.018 * (charges - 65) + 0.12 * np.clip(charges - 100, 0, None) + 0.35 * tickets + 0.3 * senior)
    z_new = (-2.0 + 0.2 * mtm + 0.035 * (tenure - 36) - 0.02 * (charges - 65) + 1.2 * (1 - fiber) * echeck
             + 0.05 * tickets)
    z = (1 - concept) * z_old + concept * z_new
    return 1.0 / (1.0 + np.exp(-z))


def simulate_day(date: dt.date, *, scenario: str | Scenario = "stable", seed: int = 42, rows: int = 2000,
                 start: dt.date | None = None, label_delay_days: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day's snapshot: (features incl. customer_id and as_of_date, labels).

    The features frame is clean unless the scenario makes this a bad day; labels are always clean
    (label_available_on = as_of_date + label_delay_days).
    """
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    rng = _rng(seed, date)
    cov = _drifting(sc, date, start) if sc.drift == "covariate" else 0.0
    concept = _drifting(sc, date, start) if sc.drift == "concept" else 0.0
    ids = rng.choice(POOL, size=rows, replace=False).astype("int64") + 1
    contract = rng.choice(CONTRACTS, size=rows, p=_norm([0.55 + 0.25 * cov, 0.25 - 0.12 * cov, 0.20 - 0.13 * cov]))
    internet = rng.choice(INTERNET, size=rows, p=_norm([0.35 - 0.15 * cov, 0.45 + 0.2 * cov, 0.20 - 0.05 * cov]))
    payment = rng.choice(PAYMENTS, size=rows, p=[0.35, 0.2, 0.22, 0.23])
    region = rng.choice(REGIONS, size=rows, p=[0.3, 0.25, 0.25, 0.2])
    tenure = np.clip(rng.gamma(1.6, 14, size=rows), 0, 72).round().astype("int64")
    tenure = np.where(contract == "two_year", np.maximum(tenure, 12), tenure)
    base = np.where(internet == "fiber", 80, np.where(internet == "dsl", 55, 25))
    charges = np.clip(base + rng.normal(0, 12, size=rows) + 30 * cov, 18, 200).round(2)
    total = (charges * tenure * rng.uniform(0.9, 1.05, size=rows)).round(2)
    total_obj = pd.Series(total, dtype="float64").where(tenure > 0, np.nan)
    tickets = rng.poisson(0.8 + 0.6 * (internet == "fiber"), size=rows).astype("int64")
    senior = rng.random(rows) < 0.16
    df = pd.DataFrame({
        "customer_id": ids, "as_of_date": date, "tenure_months": tenure, "monthly_charges": charges,
        "total_charges": total_obj, "num_support_tickets": tickets, "senior_citizen": senior,
        "contract_type": contract, "payment_method": payment, "internet_service": internet, "region": region,
    })
    prob = churn_probability(df, concept)
    if sc.group_bias:
        # its own random stream: the other columns stay identical to the scenario without the attribute
        df["age_band"] = age_band(df, _rng(seed, date, stream=2))
        z = np.log(prob / (1 - prob)) + sc.group_bias * (df["age_band"] == "under_30").to_numpy(float)
        prob = 1.0 / (1.0 + np.exp(-z))
    churned = (rng.random(rows) < prob).astype("int16")
    labels = pd.DataFrame({"customer_id": ids, "as_of_date": date, "churned": churned,
                           "label_available_on": date + dt.timedelta(days=label_delay_days)})
    bad = sc.bad_days.get(_day_index(date, start)) if start is not None else None
    if bad:
        df = corrupt(df, bad, _rng(seed, date, stream=1))
    return df, labels


def _norm(p: list[float]) -> list[float]:
    a = np.clip(np.array(p, dtype=float), 0.01, None)
    return list(a / a.sum())


def corrupt(df: pd.DataFrame, kind: str, rng: np.random.Generator, fraction: float = 0.05) -> pd.DataFrame:
    """A copy of ``df`` with one kind of bad data (:data:`BAD_KINDS`) in ``fraction`` of the rows."""
    if kind not in BAD_KINDS:
        raise ValueError(f"unknown bad kind {kind!r}; one of {BAD_KINDS}")
    out = df.copy().astype("object")
    n = len(out)
    rows = rng.choice(n, size=max(1, int(n * fraction)), replace=False) if n else np.array([], dtype=int)
    if kind == "nulls":
        out.loc[out.index[rows], "monthly_charges"] = None
        out.loc[out.index[rows[: len(rows) // 2]], "contract_type"] = None
    elif kind == "out_of_range":
        out.loc[out.index[rows], "tenure_months"] = -5
        out.loc[out.index[rows[: len(rows) // 2]], "monthly_charges"] = 99_999.0
    elif kind == "unknown_category":
        out.loc[out.index[rows], "region"] = "atlantis"
    elif kind == "wrong_type":
        out.loc[out.index[rows], "monthly_charges"] = "n/a"
        out.loc[out.index[rows[: len(rows) // 2]], "tenure_months"] = "twelve"
    elif kind == "duplicate_keys":
        src = out.index[rows]
        dst = out.index[(rows + 1) % n]
        out.loc[dst, "customer_id"] = out.loc[src, "customer_id"].to_numpy()
    elif kind == "missing_column":
        out = out.drop(columns=["region"])
    elif kind == "empty":
        out = out.iloc[0:0]
    return out


def write_landing_file(df: pd.DataFrame, landing_dir: str | Path, date: dt.date, fmt: str = "csv") -> Path:
    """Write a day's batch as ``YYYY-MM-DD.csv`` / ``.parquet`` atomically (temp file + rename)."""
    landing = Path(landing_dir)
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / f"{date.isoformat()}.{fmt}"
    tmp = path.with_suffix(path.suffix + ".tmp")
    if fmt == "csv":
        df.to_csv(tmp, index=False)
    elif fmt == "parquet":
        df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(tmp, index=False)
    else:
        raise ValueError(f"unknown format {fmt!r} (csv or parquet)")
    os.replace(tmp, path)
    return path


def load_labels(warehouse, labels: pd.DataFrame, schema: str = "demo_source", table: str = "churn_labels") -> int:
    """Replace the labels of the dates in ``labels`` in the source table, in one transaction."""
    t = ident(schema, table)
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (customer_id bigint NOT NULL, as_of_date date NOT NULL, "
                            "churned smallint NOT NULL, label_available_on date NOT NULL, "
                            "PRIMARY KEY (customer_id, as_of_date))").format(t))
        dates = sorted(set(labels["as_of_date"]))
        if dates:
            cur.execute(sql.SQL("DELETE FROM {} WHERE as_of_date = ANY(%s)").format(t), (dates,))
        buf = io.StringIO()
        labels[["customer_id", "as_of_date", "churned", "label_available_on"]].to_csv(buf, index=False, header=False)
        buf.seek(0)
        cur.copy_expert(sql.SQL("COPY {} (customer_id, as_of_date, churned, label_available_on) FROM STDIN "
                                "WITH (FORMAT csv)").format(t).as_string(cur), buf)
    return len(labels)


def generate_demo(warehouse, landing_dir: str | Path, *, start: dt.date, days: int, scenario: str = "stable",
                  seed: int = 42, rows_per_day: int = 2000, fmt: str = "csv", label_delay_days: int = 30) -> dict:
    """Write one landing file per day and load all labels (to the warehouse when given)."""
    files, label_frames, rows = [], [], 0
    for i in range(days):
        d = start + dt.timedelta(days=i)
        feats, labels = simulate_day(d, scenario=scenario, seed=seed, rows=rows_per_day, start=start,
                                     label_delay_days=label_delay_days)
        files.append(str(write_landing_file(feats, landing_dir, d, fmt)))
        label_frames.append(labels)
        rows += len(feats)
    if warehouse is not None and label_frames:
        load_labels(warehouse, pd.concat(label_frames, ignore_index=True))
    return {"days": days, "rows": rows, "files": files, "start": start.isoformat(),
            "end": (start + dt.timedelta(days=days - 1)).isoformat(), "scenario": scenario}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m airtrain.simulate", description="write simulated churn data")
    ap.add_argument("--landing", default="data/landing/churn")
    ap.add_argument("--start", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--end-today", action="store_true", help="make the range end today (UTC)")
    ap.add_argument("--scenario", default="stable", choices=sorted(SCENARIOS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--format", default="csv", choices=["csv", "parquet"])
    ap.add_argument("--url", default=os.environ.get("WAREHOUSE_URL") or os.environ.get("AIRFLOW_CONN_WAREHOUSE"),
                    help="warehouse URL (default: $WAREHOUSE_URL, then $AIRFLOW_CONN_WAREHOUSE; prefer those to "
                         "this flag: a command line is visible to every user of the machine)")
    args = ap.parse_args(argv)
    if args.end_today:
        start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days - 1)
    elif args.start:
        start = args.start
    else:
        print("error: give --start or --end-today", file=sys.stderr)
        return 2
    wh = None
    if args.url:

        wh = Warehouse(args.url)
    else:
        print("no WAREHOUSE_URL / AIRFLOW_CONN_WAREHOUSE: writing landing files only (labels not loaded)")
    out = generate_demo(wh, args.landing, start=start, days=args.days, scenario=args.scenario, seed=args.seed,
                        rows_per_day=args.rows, fmt=args.format)
    print(f"{out['scenario']}: {out['days']} days ({out['start']} .. {out['end']}), {out['rows']:,} rows "
          f"-> {args.landing}" + (" + labels in demo_source.churn_labels" if wh else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
