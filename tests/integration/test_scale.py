"""A warehouse-sized day on small data (issue 22): a date in several files, read in record batches
smaller than the date; bad rows in several batches validated in the warehouse; the training sample in
the version's lineage reproduces the model. Batch sizes are tiny so that the data is small and cheap."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import yaml
from airtrain import simulate
from airtrain.data import ingest
from airtrain.spec import load_spec, parse_spec
from airtrain.steps.schema import apply_schema

from tests.integration.dagtest import fetch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
D = dt.date(2026, 2, 1)


def spec_with(**changes):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(data)


MULTI = spec_with(source={"pattern": "{date}-part-*.csv"})


@pytest.fixture
def wh(warehouse):
    apply_schema(warehouse, SPEC)
    return warehouse


def test_a_date_in_several_files_is_read_in_batches_in_name_order(wh, tmp_path):
    folder = tmp_path / "data/landing/churn"
    folder.mkdir(parents=True)
    feats = simulate.simulate_day(D, rows=300)[0]
    parts = [feats.iloc[0:120], feats.iloc[120:130], feats.iloc[130:300]]
    for i, part in zip((2, 10, 11), parts, strict=True):  # name order, not number order: 10 < 11 < 2
        part.to_csv(folder / f"{D}-part-{i}.csv", index=False)
    feats.iloc[:5].to_csv(folder / f"{D + dt.timedelta(days=1)}-part-1.csv", index=False)  # another date
    assert ingest.missing_landing_files(MULTI, [D, D + dt.timedelta(days=2)], tmp_path) == [
        (D + dt.timedelta(days=2), folder / f"{D + dt.timedelta(days=2)}-part-*.csv")]
    # what the deferred landing wait checks
    assert ingest.file_incomplete(folder / f"{D}-part-*.csv", None) is None
    assert ingest.file_incomplete(folder / f"{D + dt.timedelta(days=2)}-part-*.csv", None) == "missing"
    res = ingest.ingest_partition(wh, MULTI, D, "r1", project_root=tmp_path, batch_bytes=1024)
    assert res.rows == 300 and res.columns_missing == [] and res.columns_extra == []
    names = [f"{D}-part-{i}.csv" for i in (10, 11, 2)]
    lines = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  data/landing/churn/{n}\n"
                    for n in names)
    assert res.source == f"data/landing/churn/{D}-part-*.csv"
    assert res.source_sha256 == hashlib.sha256(lines.encode()).hexdigest()
    rows = fetch(wh, "SELECT _row_number, _source, customer_id FROM raw.churn_batches ORDER BY 1")
    expected = [*parts[1].customer_id, *parts[2].customer_id, *parts[0].customer_id]
    assert [r[0] for r in rows] == list(range(1, 301))  # one numbering across the files
    assert [r[2] for r in rows] == [str(k) for k in expected]
    assert [r[1] for r in rows[:10]] == [f"data/landing/churn/{names[0]}"] * 10
    assert rows[-1][1] == f"data/landing/churn/{names[2]}"
    # a part with other columns is refused, and the date keeps what it had
    parts[2].drop(columns=["region"]).to_csv(folder / f"{D}-part-11.csv", index=False)
    with pytest.raises(ingest.SourceFormatError, match="the same columns"):
        ingest.ingest_partition(wh, MULTI, D, "r2", project_root=tmp_path, batch_bytes=1024)
    assert fetch(wh, "SELECT _run_id, count(*) FROM raw.churn_batches GROUP BY 1") == [("r1", 300)]


def test_a_date_larger_than_the_batch_with_bad_rows_in_several_batches(wh, tmp_path):
    """Ingest in batches of 1 KB (about ten rows), bad rows spread over the batches; validation in the
    warehouse quarantines exactly those rows, with their reasons, and stores every other row."""
    from airtrain.data.inwarehouse import validate_partition

    df = simulate.simulate_day(D, rows=300)[0].astype(object)
    bad = {5: ("monthly_charges", "n/a"), 151: ("tenure_months", "500"), 290: ("region", "mars"),
           299: ("senior_citizen", "maybe")}
    for rn, (col, value) in bad.items():
        df.loc[rn - 1, col] = value
    path = tmp_path / "data/landing/churn" / f"{D}.csv"
    path.parent.mkdir(parents=True)
    df.to_csv(path, index=False)
    assert path.stat().st_size > 20 * 1024
    res = ingest.ingest_partition(wh, SPEC, D, "r", project_root=tmp_path, batch_bytes=1024)
    assert res.rows == 300 and res.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    out, kept, report_id = validate_partition(wh, SPEC, D, "r", today=D)
    assert not out.blocked and kept is None and report_id == D.isoformat()
    assert (out.rows_total, out.rows_valid, out.rows_quarantined) == (300, 296, 4)
    assert dict(fetch(wh, "SELECT _row_number, reasons FROM quarantine.churn ORDER BY 1")) == {
        5: ["monthly_charges: 'n/a' is not a valid float"], 151: ["tenure_months: outside the allowed range 0..120"],
        290: ["region: not one of ['north', 'south', 'east', 'west']"],
        299: ["senior_citizen: 'maybe' is not a valid bool"]}
    assert fetch(wh, "SELECT row_data->>'region' FROM quarantine.churn WHERE _row_number = 290") == [("mars",)]
    assert fetch(wh, "SELECT count(*), count(DISTINCT customer_id) FROM features.churn") == [(296, 296)]
    # GX ran on its own connections (its SQL engine): none is left open after the step
    assert fetch(wh, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                     "pid <> pg_backend_pid()") == [(0,)]


def _both(wh, spec, d, csv_text: str, tmp_path, **kw):
    """The in-memory reference (validate_batch on the raw partition) and the in-warehouse validation of
    the same landed file: (reference outcome, warehouse outcome, warehouse quarantine {row: reasons})."""
    from airtrain.data.inwarehouse import validate_partition
    from airtrain.data.validation import validate_batch

    path = tmp_path / "data/landing/churn" / f"{d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(csv_text)
    ingest.ingest_partition(wh, spec, d, "r", project_root=tmp_path, batch_bytes=kw.pop("batch_bytes", 1 << 20))
    ref = validate_batch(ingest.read_partition(wh, spec, d), spec, d, "r", today=d, **kw)
    out, _kept, _rid = validate_partition(wh, spec, d, "r", today=d, **kw)
    got = dict(fetch(wh, "SELECT _row_number, reasons FROM quarantine.churn WHERE _partition_date = %s", (d,)))
    return ref, out, got


def _same(ref, out, got):
    assert (out.blocked, out.rows_total, out.rows_valid, out.rows_quarantined) == (
        ref.blocked, ref.rows_total, ref.rows_valid, ref.rows_quarantined), (out.block_reasons, ref.block_reasons)
    # GX orders its results its own way (table-level first): the same results, reasons and messages
    assert sorted(out.block_reasons) == sorted(ref.block_reasons) and sorted(out.warnings) == sorted(ref.warnings)
    # each row's reasons: the same texts (in the warehouse in the spec's rule order, in memory in GX's order)
    assert {k: sorted(v) for k, v in got.items()} == {
        int(r["_row_number"]): sorted(r["reasons"]) for r in ref.quarantine.to_dict("records")}
    assert sorted((r["expectation"], r["column"], r["label"], r["success"], r["unexpected_count"])
                  for r in out.results) == sorted(
        (r["expectation"], r["column"], r["label"], r["success"], r["unexpected_count"]) for r in ref.results)


def _bad_day(d, rows=400):
    import numpy as np

    df = simulate.simulate_day(d, rows=rows)[0].astype(object)
    rng = np.random.default_rng(7)
    for kind in ("nulls", "wrong_type"):
        df = simulate.corrupt(df, kind, rng).astype(object)
    df.loc[0, "monthly_charges"] = "nan"
    df.loc[1, "total_charges"] = "inf"
    df.loc[2, "tenure_months"] = "1.5"
    df.loc[3, "monthly_charges"] = " "
    df.loc[4, "senior_citizen"] = "Yes"
    df.loc[5, "senior_citizen"] = "maybe"
    df.loc[6, "region"] = " north"
    df.loc[7, "contract_type"] = "One_Year"
    df.loc[8, "as_of_date"] = "2099-01-01"
    df.loc[9, "as_of_date"] = "2026-02-30"
    df.loc[10, "monthly_charges"] = "it's \"odd\""
    df.loc[11, "tenure_months"] = "1e400"
    df.loc[12, "customer_id"] = df.loc[13, "customer_id"]
    df.loc[14, "customer_id"] = None
    df.loc[15, "tenure_months"] = "x'y"
    df.loc[16, "tenure_months"] = "500"
    df.loc[17, "region"] = "mars"
    df.loc[18, "num_support_tickets"] = "-1"
    # the casts' fast paths (digits, digits.digits, the partition's own date) and their edges
    df.loc[19, "tenure_months"] = "."
    df.loc[20, "tenure_months"] = "007"
    df.loc[21, "monthly_charges"] = "5."
    df.loc[22, "monthly_charges"] = ".5"
    df.loc[23, "total_charges"] = "1.2.3"
    df.loc[24, "num_support_tickets"] = "+3"
    df.loc[25, "total_charges"] = "12.50"
    df.loc[26, "tenure_months"] = "99999999999999999999"
    df.loc[27, "as_of_date"] = f" {d.isoformat()} "
    df.loc[28, "as_of_date"] = d.isoformat().replace("-0", "-")
    return df


def test_in_warehouse_validation_gives_the_reference_outcome_row_by_row(wh, tmp_path):
    ref, out, got = _both(wh, SPEC, D, _bad_day(D).to_csv(index=False), tmp_path)
    assert out.rows_quarantined > 40 and not out.blocked, out.block_reasons
    _same(ref, out, got)
    assert fetch(wh, "SELECT count(*) FROM features.churn WHERE as_of_date = %s", (D,)) == [(out.rows_valid,)]
    # blocked (too many bad rows, a missing column), warn rules, a hand-written suite, labels in the batch
    day = D + dt.timedelta(days=1)
    _same(*_both(wh, SPEC, day, simulate.simulate_day(day, rows=150)[0].assign(monthly_charges="x").to_csv(
        index=False), tmp_path))
    _same(*_both(wh, SPEC, day, simulate.simulate_day(day, rows=150)[0].drop(columns=["region"]).to_csv(index=False),
                 tmp_path))
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["validation"] = {**data.get("validation", {}), "row_count": {"min": 1000, "on_fail": "warn"}}
    for f in data["features"]:
        if f["name"] in ("region", "tenure_months"):
            f["on_fail"] = "warn"
    warn = parse_spec(data)
    suite = tmp_path / "suite.json"
    suite.write_text('[{"type": "expect_column_values_to_be_between", "kwargs": {"column": "monthly_charges", '
                     '"max_value": 90}, "severity": "quarantine", "description": "charges at most 90"}, '
                     '{"type": "expect_column_mean_to_be_between", "kwargs": {"column": "monthly_charges", '
                     '"min_value": 500}, "severity": "warn", "description": "mean charges plausible"}]')
    day = D + dt.timedelta(days=2)
    ref, out, got = _both(wh, warn, day, _bad_day(day).to_csv(index=False), tmp_path, extra_suites=[suite])
    assert any("charges at most 90" in r for rs in got.values() for r in rs) and out.warnings
    _same(ref, out, got)
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data.pop("labels")
    data["target"].update(label_delay_days=0, positive=["Yes"], negative=["No"])
    data["date_format"] = "%d-%m-%Y"
    labeled = parse_spec(data)
    apply_schema(wh, labeled)
    df = _bad_day(day).assign(churned=["Yes", "No", " ", None] * 100)
    df.loc[20:24, "churned"] = "Maybe"
    df["as_of_date"] = [day.strftime("%d-%m-%Y")] * 390 + [day.isoformat()] * 5 + ["31-02-2026", "1-1", "x", "",
                                                                                    day.strftime("%d-%m-%Y")]
    ref, out, got = _both(wh, labeled, day, df.to_csv(index=False), tmp_path)
    _same(ref, out, got)
    assert not out.blocked and out.rows_labeled == ref.rows_labeled > 0
    assert fetch(wh, "SELECT count(*) FROM features.churn_labels WHERE as_of_date = %s", (day,)) == [
        (out.rows_labeled,)]


def test_the_training_sample_is_in_the_lineage_and_a_retrain_reproduces_the_model(wh, tmp_path):
    """training.sample_rows: a per-date md5(key|date) sample read in the warehouse; the lineage says which
    rows (per date, order), how many and their hash, and a retrain as of the same date reads the same
    rows and fits the same model."""
    import numpy as np
    import pandas as pd
    from airtrain.model.evaluation import predict_scores
    from airtrain.registry import versions
    from airtrain.steps import retrain

    spec = spec_with(training={"sample_rows": 400, "window_days": 8, "holdout_days": 2, "min_rows": 50})
    start = D
    dates = [start + dt.timedelta(days=i) for i in range(9)]
    labels = []
    for d in dates:
        f, lab = simulate.simulate_day(d, rows=150, start=start, label_delay_days=1)
        simulate.write_landing_file(f, tmp_path / "data/landing/churn", d)
        labels.append(lab)
    simulate.load_labels(wh, pd.concat(labels))
    retrain.ingest(wh, spec, dates, "boot", tmp_path)
    retrain.validate(wh, spec, dates, "boot", today=dates[-1], reports_root=tmp_path / "reports")
    as_of = dates[-1] + dt.timedelta(days=1)
    first = retrain.train(wh, spec, as_of, "t1")
    second = retrain.train(wh, spec, as_of, "t2")
    a, b = (versions.get_version(wh, spec, r["version"]).lineage for r in (first, second))
    assert a["sample"]["rows_per_date"] == 50 and a["sample"]["order"] == "md5(key|date), key"
    assert a["sample"]["train_rows"] == 6 * 50 and a["sample"]["holdout_rows"] == 2 * 50  # not the 150 a day
    assert a["sample"] == b["sample"] and first["data_hash"] == second["data_hash"] == a["sample"]["train_hash"]
    # the sample is the first rows of each date by md5(key|date), chosen in the warehouse
    day = dates[0]
    want = [r[0] for r in fetch(wh, "SELECT f.customer_id FROM features.churn f JOIN features.churn_labels l USING "
                                    "(customer_id, as_of_date) WHERE f.as_of_date = %s AND l.label_available_on <= %s "
                                    "ORDER BY md5(f.customer_id::text || '|' || f.as_of_date::text), f.customer_id "
                                    "LIMIT 50", (day, as_of))]
    from airtrain.data.features import labeled_frame

    got = labeled_frame(wh, spec, as_of, day, day, per_date=50)
    assert sorted(got["customer_id"]) == sorted(want)
    holdout = labeled_frame(wh, spec, as_of, dates[-2], dates[-1], per_date=50)
    p1 = predict_scores(versions.load_artifact(wh, spec, first["version"]), holdout, spec)
    p2 = predict_scores(versions.load_artifact(wh, spec, second["version"]), holdout, spec)
    assert np.array_equal(np.asarray(p1), np.asarray(p2))
    ev = retrain.evaluate(wh, spec, first["version"], "e1", as_of)
    assert ev["holdout_rows"] == a["sample"]["holdout_rows"]


def test_a_date_in_several_files_is_ingested_only_as_its_marker_lists_them(wh, tmp_path):
    """A date in several parts with a ``sha256sum`` marker: a part that is not the one the marker lists
    (still being written) is refused as the bytes stream, in the same transaction, so the date keeps
    what it had; once every part matches, the date is taken whole."""
    spec = spec_with(source={"pattern": "{date}-part-*.csv", "ready_marker": "{date}.sha256"})
    folder = tmp_path / "data/landing/churn"
    folder.mkdir(parents=True)
    feats = simulate.simulate_day(D, rows=200)[0]
    bodies = {f"{D}-part-{i}.csv": feats.iloc[i * 100:(i + 1) * 100].to_csv(index=False).encode() for i in (0, 1)}
    (folder / f"{D}.sha256").write_text("".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in bodies.items()))
    name0, name1 = bodies
    (folder / name0).write_bytes(bodies[name0])
    with pytest.raises(ingest.LandingIncompleteError, match="not there yet"):
        ingest.ingest_partition(wh, spec, D, "r1", project_root=tmp_path, batch_bytes=1024)
    half = bodies[name1][: bodies[name1].index(b"\n", len(bodies[name1]) // 2) + 1]
    (folder / name1).write_bytes(half)  # a well-formed CSV, half the rows
    with pytest.raises(ingest.LandingIncompleteError, match=f"{name1} does not match its ready marker"):
        ingest.ingest_partition(wh, spec, D, "r2", project_root=tmp_path, batch_bytes=1024)
    assert fetch(wh, "SELECT count(*) FROM raw.churn_batches") == [(0,)]
    (folder / name1).write_bytes(bodies[name1])
    assert ingest.ingest_partition(wh, spec, D, "r3", project_root=tmp_path, batch_bytes=1024).rows == 200
    assert fetch(wh, "SELECT _run_id, count(*) FROM raw.churn_batches GROUP BY 1") == [("r3", 200)]
