"""The bad-input battery: 25 kinds of bad batches through the real ingest and validation steps on a
real warehouse. Each gets a clear outcome (refused at ingest, quarantined rows, a warning or a
blocked batch, per the spec), the champion is never touched, and what landed is kept."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pytest
from airtrain import invariants, simulate
from airtrain.data.ingest import IngestError
from airtrain.data.validation import BatchBlockedError
from airtrain.steps import release, retrain

from tests.integration.dagtest import ROOT, Project, fetch

pytestmark = pytest.mark.integration

START = dt.date(2026, 2, 1)
BOOT = 8
ROWS = 400


def clean(d: dt.date) -> pd.DataFrame:
    return simulate.simulate_day(d, rows=ROWS, start=START)[0]


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def _set(df: pd.DataFrame, col: str, n: int, value) -> pd.DataFrame:
    out = df.astype({col: "object"}).copy()
    out.loc[out.index[:n], col] = value
    return out


def future_dates(df: pd.DataFrame) -> pd.DataFrame:
    return _set(df, "as_of_date", 10, "2099-01-01")


CASES = {
    # the simulator's bad scenarios
    "nulls": (lambda df: csv_bytes(simulate.corrupt(df, "nulls", np.random.default_rng(1))), "quarantine"),
    "out_of_range": (lambda df: csv_bytes(simulate.corrupt(df, "out_of_range", np.random.default_rng(1))),
                     "quarantine"),
    "unknown_category": (lambda df: csv_bytes(simulate.corrupt(df, "unknown_category", np.random.default_rng(1))),
                         "quarantine"),
    "wrong_type": (lambda df: csv_bytes(simulate.corrupt(df, "wrong_type", np.random.default_rng(1))), "quarantine"),
    "duplicate_keys": (lambda df: csv_bytes(simulate.corrupt(df, "duplicate_keys", np.random.default_rng(1))),
                       "quarantine"),
    "missing_column": (lambda df: csv_bytes(df.drop(columns=["region"])), "block"),
    "empty_batch": (lambda df: csv_bytes(df.iloc[0:0]), "block"),
    # encodings and files
    "latin1_encoding": (lambda df: csv_bytes(df).replace(b"north", "nörth".encode("latin-1"), 1), "refused"),
    "empty_file": (lambda df: b"", "block"),
    "truncated_file": (lambda df: csv_bytes(df)[:-25], "refused"),
    "binary_garbage": (lambda df: bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8)), "refused"),
    "ragged_row": (lambda df: csv_bytes(df) + b"1,2,3\n", "refused"),
    "semicolon_delimiter": (lambda df: df.to_csv(index=False, sep=";").encode(), "block"),
    "utf8_bom": (lambda df: b"\xef\xbb\xbf" + csv_bytes(df), "ok"),
    # values
    "huge_values": (lambda df: csv_bytes(_set(df, "monthly_charges", 10, "1e308")), "quarantine"),
    "nan_and_inf": (lambda df: csv_bytes(_set(_set(df, "monthly_charges", 5, "NaN"), "total_charges", 5, "inf")),
                    "quarantine"),
    "all_null_column": (lambda df: csv_bytes(_set(df, "monthly_charges", ROWS, None)), "block"),
    "float_in_int_column": (lambda df: csv_bytes(_set(df, "tenure_months", 10, "12.5")), "quarantine"),
    "dates_in_the_future": (lambda df: csv_bytes(future_dates(df)), "quarantine"),
    "padded_and_cased_categories": (lambda df: csv_bytes(_set(_set(df, "region", 5, " north"), "contract_type", 5,
                                                              "One_Year")), "quarantine"),
    # columns
    "extra_columns": (lambda df: csv_bytes(df.assign(promo_code="X1", loyalty=3)), "warn"),
    "renamed_column": (lambda df: csv_bytes(df.rename(columns={"region": "Region"})), "block"),
    "type_change_bool_to_text": (lambda df: csv_bytes(_set(df, "senior_citizen", ROWS, "maybe")), "block"),
    "duplicate_header": (lambda df: csv_bytes(df).replace(b",region\n", b",customer_id\n", 1), "block"),
    # volume
    "far_larger_partition": (lambda df: csv_bytes(pd.concat([df] * 20, ignore_index=True).assign(
        customer_id=lambda x: np.arange(1, len(x) + 1))), "block"),
}


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server):
    from airtrain.steps.schema import apply_schema
    from airtrain.warehouse.connection import Warehouse
    from airtrain_dev.demo import write_demo_spec

    wh = Warehouse(pg_server.url(pg_server.create_database("bad")))
    p = Project(tmp_path_factory.mktemp("bad"), wh)
    write_demo_spec(ROOT / "include/pipelines/churn.yaml", p.spec_dir, {
        "training": {"min_rows": 500, "window_days": 8, "holdout_days": 2},
        "validation": {"row_count": {"min": 100, "max": 5000, "on_fail": "block"}}})
    spec = p.spec()
    apply_schema(wh, spec)
    labels = []
    dates = [START + dt.timedelta(days=i) for i in range(BOOT)]
    for d in dates:
        f, lab = simulate.simulate_day(d, rows=ROWS, start=START, label_delay_days=1)
        simulate.write_landing_file(f, p.landing, d)
        labels.append(lab)
    simulate.load_labels(wh, pd.concat(labels))
    retrain.ingest(wh, spec, dates, "boot", p.root)
    retrain.validate(wh, spec, dates, "boot", today=dates[-1], reports_root=p.root / "reports")
    trained = retrain.train(wh, spec, dates[-1] + dt.timedelta(days=1), "boot")
    ev = retrain.evaluate(wh, spec, trained["version"], "boot", dates[-1] + dt.timedelta(days=1))
    assert release.promote(wh, spec, ev, run_id="boot", actor="test")["promoted"]
    return p


def outcome_of(p: Project, d: dt.date, data: bytes) -> tuple[str, str]:
    spec, wh = p.spec(), p.warehouse
    p.landing.mkdir(parents=True, exist_ok=True)
    (p.landing / f"{d.isoformat()}.csv").write_bytes(data)
    try:
        retrain.ingest(wh, spec, [d], f"bad-{d}", p.root)
    except IngestError as exc:
        return "refused", str(exc)
    try:
        summary = retrain.validate(wh, spec, [d], f"bad-{d}", today=d, reports_root=p.root / "reports")[0]
    except BatchBlockedError as exc:
        return "block", str(exc)
    if summary["rows_quarantined"]:
        return "quarantine", str(summary)
    if summary["warnings"]:
        return "warn", str(summary)
    return "ok", str(summary)


def test_at_least_twenty_kinds():
    assert len(CASES) >= 20


@pytest.mark.parametrize("i, kind", list(enumerate(CASES)), ids=list(CASES))
def test_bad_batch(proj, i, kind):
    make, expected = CASES[kind]
    d = START + dt.timedelta(days=BOOT + i)
    data = make(clean(d))
    champion = fetch(proj.warehouse, "SELECT version, promotion_id FROM registry.champions")
    outcome, message = outcome_of(proj, d, data)
    assert outcome == expected, message
    assert len(message) > 20  # a readable reason, not a bare exception
    # the champion is untouched and the landed file is still there, byte for byte
    assert fetch(proj.warehouse, "SELECT version, promotion_id FROM registry.champions") == champion
    assert (proj.landing / f"{d.isoformat()}.csv").read_bytes() == data
    raw = fetch(proj.warehouse, "SELECT count(*) FROM raw.churn_batches WHERE _partition_date = %s", (d,))[0][0]
    if outcome == "refused":
        assert raw == 0  # nothing half-loaded; the file stays for a fixed re-delivery
    else:
        lines = len(io.BytesIO(data.replace(b"\r", b"")).read().decode("utf-8-sig").splitlines())
        assert raw == max(lines - 1, 0)  # every landed row kept as received
        if outcome == "quarantine":
            reasons = fetch(proj.warehouse, "SELECT reasons FROM quarantine.churn WHERE _partition_date = %s "
                                            "LIMIT 1", (d,))
            assert reasons and reasons[0][0], "quarantined rows carry their reasons"
    assert invariants.check(proj.warehouse, proj.spec()) == []
