"""Validation with real Great Expectations on small frames: quarantine, warn, block."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airtrain.data.validation import BatchBlockedError, validate_batch
from airtrain.simulate import corrupt, simulate_day
from airtrain.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
D = dt.date(2026, 3, 1)


def raw_of(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as ingest stores it: every value text, nulls as None, with row numbers."""
    r = df.astype(str).where(df.notna(), None).reset_index(drop=True)
    r.insert(0, "_row_number", range(1, len(r) + 1))
    return r


@pytest.fixture(scope="module")
def clean():
    return simulate_day(D, rows=400)[0]


def run(df, spec=SPEC, **kw):
    return validate_batch(raw_of(df), spec, D, "run-1", today=D, **kw)


def test_clean_batch_passes_with_typed_output(clean):
    o = run(clean)
    assert not o.blocked and o.rows_valid == 400 and o.rows_quarantined == 0
    assert str(o.valid["customer_id"].dtype) == "Int64" and str(o.valid["tenure_months"].dtype) == "Int64"
    assert o.valid["monthly_charges"].dtype == "float64"
    assert set(o.valid["senior_citizen"].unique()) <= {True, False}
    assert o.valid["as_of_date"].iloc[0] == D
    assert all(r["success"] for r in o.results)
    assert "expect_column_values_to_be_between" in o.html_report and "PASSED" in o.html_report


@pytest.mark.parametrize("kind, rows, reason", [
    pytest.param("nulls", 20, "monthly_charges: missing (null) but required", id="nulls"),
    pytest.param("out_of_range", 20, "tenure_months: outside the allowed range 0..120", id="out-of-range"),
    pytest.param("unknown_category", 20, "region: not one of", id="unknown-category"),
    pytest.param("wrong_type", 20, "'n/a' is not a valid float", id="wrong-type"),
    pytest.param("duplicate_keys", None, "customer_id: duplicate key", id="duplicate-keys"),
])
def test_bad_rows_are_quarantined_with_reasons(clean, kind, rows, reason):
    bad = corrupt(clean, kind, np.random.default_rng(3))
    if rows is None:  # every copy of a duplicated key
        rows = int(bad["customer_id"].duplicated(keep=False).sum())
        assert rows >= 20
    o = run(bad)
    assert not o.blocked, o.block_reasons
    assert o.rows_quarantined == rows
    assert o.rows_valid + o.rows_quarantined == o.rows_total == 400
    assert any(reason in r for reasons in o.quarantine["reasons"] for r in reasons), list(o.quarantine["reasons"][:3])
    rn = set(o.quarantine["_row_number"])
    assert len(rn) == rows  # each quarantined row once
    assert not set(o.valid["customer_id"]).intersection(
        {int(r["customer_id"]) for r in o.quarantine["row_data"] if r.get("customer_id")}) or kind == "duplicate_keys"
    assert isinstance(o.quarantine["row_data"].iloc[0], dict)


@pytest.mark.parametrize("df_change, message", [
    pytest.param(lambda d: d.drop(columns=["region"]), "column 'region' is missing", id="missing-column"),
    pytest.param(lambda d: d.iloc[0:0], "row count not between 100", id="empty-batch"),
    pytest.param(lambda d: d.assign(monthly_charges="x"), "100.0% of rows failed validation", id="too-many-bad-rows"),
])
def test_blocking_failures(clean, df_change, message):
    o = run(df_change(clean))
    assert o.blocked
    assert any(message in r for r in o.block_reasons), o.block_reasons
    with pytest.raises(BatchBlockedError, match="blocked by validation"):
        o.raise_if_blocked()


def test_warn_rules_record_without_quarantining(clean):
    data = json.loads(SPEC.model_dump_json(by_alias=True))
    for f in data["features"]:
        if f["name"] == "region":
            f["on_fail"] = "warn"
    spec = parse_spec(data)
    o = run(corrupt(clean, "unknown_category", np.random.default_rng(3)), spec)
    assert not o.blocked and o.rows_quarantined == 0 and o.rows_valid == 400
    assert any("region" in w for w in o.warnings)


def test_block_rules_block(clean):
    data = json.loads(SPEC.model_dump_json(by_alias=True))
    for f in data["features"]:
        if f["name"] == "region":
            f["on_fail"] = "block"
    o = run(corrupt(clean, "unknown_category", np.random.default_rng(3)), parse_spec(data))
    assert o.blocked and any("region" in r for r in o.block_reasons)


def test_freshness_and_extra_columns(clean):
    o = validate_batch(raw_of(clean.assign(surprise="x")), SPEC, D, "r", today=D + dt.timedelta(days=10))
    assert not o.blocked
    assert any("10 days old" in w for w in o.warnings)


def test_nan_and_inf_strings_are_invalid(clean):
    df = clean.copy().astype(object)
    df.loc[0, "monthly_charges"] = "nan"
    df.loc[1, "monthly_charges"] = "inf"
    df.loc[2, "tenure_months"] = "1.5"
    o = run(df)
    assert sorted(o.quarantine["_row_number"]) == [1, 2, 3]


def test_hand_written_suite_is_applied(clean, tmp_path):
    suite = tmp_path / "extra.json"
    suite.write_text(json.dumps([{"type": "expect_column_mean_to_be_between",
                                  "kwargs": {"column": "monthly_charges", "min_value": 500, "max_value": 600},
                                  "severity": "warn", "description": "mean charges plausible"}]))
    o = run(clean, extra_suites=[suite])
    assert any("mean charges plausible" in w for w in o.warnings)


def batch_labels_spec(**target):
    """The churn spec with the label in the batch (no labels section, label_delay_days 0)."""
    data = json.loads(SPEC.model_dump_json(by_alias=True))
    data.pop("labels")
    data["target"].update(label_delay_days=0, **target)
    return parse_spec(data)


def test_a_target_in_the_batch_is_cast_like_a_column_and_never_a_feature(clean):
    spec = batch_labels_spec(positive=["Yes"], negative=["No"])
    df = clean.astype(object).assign(churned=["Yes", "No"] * 200)
    df.loc[3, "churned"] = "Maybe"
    df.loc[4, "churned"] = "  "  # blank: no label yet, the row is still valid
    o = run(df, spec)
    assert not o.blocked and o.rows_quarantined == 1
    assert o.quarantine["reasons"].iloc[0] == [
        "churned: 'Maybe' is not a valid label (positive ['Yes'], negative ['No'])"]
    assert str(o.valid["churned"].dtype) == "Int64" and o.valid["churned"].isna().sum() == 1
    assert o.rows_labeled == 398 and o.summary()["rows_labeled"] == 398
    assert int(o.valid["churned"].sum()) == sum(v == "Yes" for v in df["churned"])
    assert "churned" not in spec.feature_names


def test_a_batch_without_its_target_blocks_only_when_labels_come_from_batches(clean):
    o = run(clean)  # the shipped spec has a labels table: a batch without the target is normal
    assert not o.blocked and o.rows_labeled == 0
    o = run(clean, batch_labels_spec())
    assert o.blocked
    assert any("column 'churned'" in r and "every batch must carry the label" in r for r in o.block_reasons)


def test_a_missing_column_names_the_header_that_looks_like_it(clean):
    raw = raw_of(clean.rename(columns={"monthly_charges": "MonthlyCharges"}))
    raw["_extra"] = [json.dumps({"MonthlyCharges": v}) for v in raw.pop("MonthlyCharges")]
    o = validate_batch(raw, SPEC, D, "r", today=D)
    assert o.blocked
    assert any("set source of feature 'monthly_charges': \"MonthlyCharges\"" in r for r in o.block_reasons), \
        o.block_reasons


def test_blank_and_whitespace_only_values_are_nulls(clean):
    df = clean.copy().astype(object)
    df.loc[0, "total_charges"] = "   "  # nullable: kept as null (imputed by the model)
    df.loc[1, "monthly_charges"] = " "  # not nullable: quarantined as a null, not as a bad number
    df.loc[2, "senior_citizen"] = "Yes"  # a bool spelling
    o = run(df)
    assert list(o.quarantine["_row_number"]) == [2]
    assert o.quarantine["reasons"].iloc[0] == ["monthly_charges: missing (null) but required"]
    assert pd.isna(o.valid.loc[o.valid["customer_id"] == clean.loc[0, "customer_id"], "total_charges"]).all()
    assert bool(o.valid.loc[o.valid["customer_id"] == clean.loc[2, "customer_id"], "senior_citizen"].iloc[0])


@pytest.mark.parametrize("fmt, write", [
    pytest.param("%d-%m-%Y", lambda i: D.strftime("%d-%m-%Y"), id="day-first"),
    pytest.param("%m/%d/%Y", lambda i: D.strftime("%m/%d/%Y"), id="us"),
    pytest.param("%Y-%m-%d %H:%M:%S", lambda i: f"{D} {i % 24:02d}:00:00", id="hourly-timestamps"),
])
def test_a_declared_date_format_reads_the_date_column(clean, fmt, write):
    """``date_format`` (issue 20, item 13): the date column as the file writes it; a value in any other
    form quarantines its row, naming the format it was read with."""
    spec = parse_spec({**yaml_of(SPEC), "date_format": fmt})
    df = clean.copy()
    df["as_of_date"] = [write(i) for i in range(len(df))]
    df.loc[:4, "as_of_date"] = D.isoformat() if fmt != "%Y-%m-%d %H:%M:%S" else D.strftime("%d-%m-%Y")
    o = run(df, spec)
    assert not o.blocked and o.rows_valid == 395 and o.rows_quarantined == 5
    assert (o.valid["as_of_date"] == D).all()
    assert all(f"is not a valid date ({fmt})" in "; ".join(r) for r in o.quarantine["reasons"])
    assert run(df).blocked  # without it those 395 rows do not read as dates: quarantined, the batch blocked


def yaml_of(spec) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "include/pipelines" / f"{spec.name}.yaml").read_text())
