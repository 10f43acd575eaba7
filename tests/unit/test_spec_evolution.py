"""Evolving a spec (issue 27), the pure parts on tiny frames: a feature's since/until at validation,
model inputs without observed values at training, the drift reference under the current rules and
the skipped columns, and the reuse key of a version."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from airtrain.data.ingest import optional_columns
from airtrain.data.validation import validate_batch
from airtrain.model import training
from airtrain.monitoring import drift, reference
from airtrain.monitoring.check import _drift_notes
from airtrain.monitoring.drift import ColumnRule, evidently_drift
from airtrain.simulate import simulate_day
from airtrain.spec import SpecError, hashing, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads(load_spec(ROOT / "include/pipelines/churn.yaml").model_dump_json(by_alias=True))
D = dt.date(2026, 3, 1)


def spec_with(*features: dict, **changes) -> object:
    data = json.loads(json.dumps(BASE))
    data["features"] += list(features)
    for k, v in changes.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) else v
    return parse_spec(data)


def raw_of(df: pd.DataFrame) -> pd.DataFrame:
    r = df.astype(str).where(df.notna(), None).reset_index(drop=True)
    r.insert(0, "_row_number", range(1, len(r) + 1))
    return r


@pytest.fixture(scope="module")
def day():
    return simulate_day(D, rows=200)[0]


# ---- item 3: a feature added to a running pipeline ---------------------------------------------


def test_a_feature_added_later_blocks_old_dates_until_since_says_when_it_starts(day):
    new = {"name": "loyalty_score", "type": "float", "min": 0, "max": 1}  # not nullable
    raw = raw_of(day)  # an older file: it has no loyalty_score column
    blocked = validate_batch(raw, spec_with(new), D, "r", today=D)
    assert blocked.blocked
    assert any("loyalty_score" in r and "since: <first date>" in r for r in blocked.block_reasons)
    # declared: the dates before `since` are validated with the column NULL, and a NULL is accepted there
    spec = spec_with({**new, "since": str(D + dt.timedelta(days=1))})
    ok = validate_batch(raw, spec, D, "r", today=D)
    assert not ok.blocked and ok.rows_valid == 200 and ok.rows_quarantined == 0
    assert "loyalty_score" in ok.valid.columns and ok.valid["loyalty_score"].isna().all()
    assert "loyalty_score" in optional_columns(spec, D) and "loyalty_score" not in optional_columns(spec, D + dt.timedelta(days=1))
    # from `since` on the column is required and its rules apply again (a NULL is quarantined)
    later = D + dt.timedelta(days=1)
    on = day.assign(as_of_date=later, loyalty_score=[None] * 10 + [0.5] * 190)
    res = validate_batch(raw_of(on), spec, later, "r", today=later)
    assert res.rows_quarantined == 10 and not res.blocked


def test_until_lets_a_column_stop_arriving(day):
    data = json.loads(json.dumps(BASE))
    for f in data["features"]:
        if f["name"] == "payment_method":
            f["until"] = str(D - dt.timedelta(days=1))
    spec = parse_spec(data)
    res = validate_batch(raw_of(day.drop(columns=["payment_method"])), spec, D, "r", today=D)
    assert not res.blocked and res.valid["payment_method"].isna().all()
    with pytest.raises(SpecError, match="since .* is after until"):
        spec_with({"name": "x", "type": "int", "since": "2026-03-02", "until": "2026-03-01"})


# ---- item 4: model inputs without an observed value in the training window ---------------------


def test_inputs_without_observed_values_are_found_and_dropped():
    from airtrain.model.training import train

    spec = spec_with({"name": "loyalty_score", "type": "float", "nullable": True},
                     training={"min_rows": 10, "params": {"max_iter": 10}})
    rng = np.random.default_rng(0)
    parts = [simulate_day(D + dt.timedelta(days=i), rows=60)[0] for i in range(3)]
    df = pd.concat(parts, ignore_index=True).assign(loyalty_score=np.nan, churned=rng.integers(0, 2, 180))
    assert training.unobserved_inputs(df, spec) == ["loyalty_score"]
    eff = training.without_inputs(spec, ["loyalty_score"])
    assert "loyalty_score" not in eff.model_feature_names and "loyalty_score" in eff.feature_names
    result = train(eff, df)
    assert "loyalty_score" not in list(result.model.feature_names_in_)
    assert result.lineage["model_inputs"] == eff.model_feature_names


# ---- item 4: drift names every column it skips -------------------------------------------------


def test_a_column_without_values_in_the_reference_is_skipped_not_drift():
    rng = np.random.default_rng(1)
    n = 500
    ref = pd.DataFrame({"a": rng.normal(0, 1, n), "c": [None] * n, "prediction": rng.uniform(0, 1, n)})
    cur = pd.DataFrame({"a": rng.normal(0, 1, n), "c": rng.choice(["x", "y"], n), "prediction": rng.uniform(0, 1, n)})
    rules = [ColumnRule("a", "numerical", "psi", 0.2), ColumnRule("c", "categorical", "jensenshannon", 0.1)]
    scores, _ = evidently_drift(ref, cur, [*rules, ColumnRule("prediction", "numerical", "psi", 0.2)], 0.5)
    assert scores["c"] is None and scores["a"] is not None  # all-NULL vs values is not "drift"
    skipped = drift.drift_skips(ref, cur, rules)
    assert skipped == {"c": "0 observed values in the reference"}
    note = _drift_notes(3, skipped, {}, {}, [])
    assert note == ["not checked: c (0 observed values in the reference of v3)"]


# ---- item 7: a tightened rule is not drift -----------------------------------------------------


def test_the_reference_is_filtered_by_the_current_rules_and_rule_changes_are_named():
    old = BASE
    data = json.loads(json.dumps(BASE))
    for f in data["features"]:
        if f["name"] == "monthly_charges":
            f["max"] = 100.0
        if f["name"] == "region":
            f["allowed"] = ["north", "south", "east"]
    tight = parse_spec(data)
    ref = pd.DataFrame({"customer_id": range(6), "as_of_date": [D] * 6,
                        **{f: [1.0] * 6 for f in ("tenure_months", "total_charges", "num_support_tickets",
                                                  "senior_citizen")},
                        "contract_type": ["one_year"] * 6, "payment_method": ["mailed_check"] * 6,
                        "internet_service": ["dsl"] * 6,
                        "monthly_charges": [50.0, 99.0, 150.0, 400.0, 20.0, 30.0],
                        "region": ["north", "west", "south", "east", "north", "west"]})
    kept, excluded = reference.under_current_rules(ref, tight)
    assert kept["customer_id"].tolist() == [0, 4]
    assert excluded == {"monthly_charges": 2, "region": 2}
    assert reference.under_current_rules(ref, parse_spec(old))[1] == {}  # the old rules keep every row
    for f in data["features"]:  # a warn rule keeps its failing rows in every window: it filters nothing
        f["on_fail"] = "warn" if f["name"] == "monthly_charges" else f.get("on_fail", "quarantine")
    assert reference.under_current_rules(ref, parse_spec(data))[1] == {"region": 2}
    changes = reference.rule_changes(old, tight)
    assert changes == {"monthly_charges": ["max 500 -> 100"],
                       "region": ["allowed ['north', 'south', 'east', 'west'] -> ['north', 'south', 'east']"]}
    assert reference.rule_changes(None, tight) == {}  # a version older than stored specs: nothing to compare
    note = _drift_notes(1, {}, excluded, changes, ["monthly_charges"])
    assert "rules changed since v1 was trained (monthly_charges: max 500 -> 100" in note[0]
    assert note[0].endswith("drifted despite that: monthly_charges")


# ---- item 8: what a version is reused for ------------------------------------------------------


@pytest.mark.parametrize("change, same", [
    pytest.param({"monitoring": {"min_rows": 123}}, True, id="monitoring-threshold"),
    pytest.param({"description": "other words"}, True, id="description"),
    pytest.param({"promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.6}]}}, True, id="gate"),
    pytest.param({"target": {"positive": ["yes", "1"]}}, False, id="target-mapping"),
    pytest.param({"validation": {"max_quarantine_fraction": 0.3}}, False, id="validation-rule"),
    pytest.param({"training": {"params": {"max_iter": 10}}}, False, id="params"),
])
def test_the_reuse_key_covers_what_shapes_the_model(change, same):
    assert (hashing.model_spec_sha256(spec_with(**change)) == hashing.model_spec_sha256(spec_with())) is same


def test_feature_rules_and_types_change_the_reuse_key_and_the_spec_text_round_trips():
    base = hashing.model_spec_sha256(spec_with())
    data = json.loads(json.dumps(BASE))
    data["features"][0]["max"] = 60
    assert hashing.model_spec_sha256(parse_spec(data)) != base
    data = json.loads(json.dumps(BASE))
    data["features"][0]["type"] = "float"
    assert hashing.model_spec_sha256(parse_spec(data)) != base
    text = hashing.spec_text(load_spec(ROOT / "include/pipelines/churn.yaml"))
    assert parse_spec(yaml.safe_load(text)) == load_spec(ROOT / "include/pipelines/churn.yaml")
    assert "random_state: 42" in text and "sample_rows: 50000" in text
