"""The labels table a spec names is created from the spec when it does not exist, with the shape
docs/SPEC.md documents; its values are mapped with target.positive/negative when they are loaded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from airtrain.data import labels
from airtrain.spec import parse_spec
from airtrain.steps.schema import apply_schema

from tests.integration.dagtest import fetch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
D = dt.date(2026, 2, 1)


def spec_with_labels(**target):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["labels"] = {"schema": "crm", "table": "churn_outcomes", "available_column": "known_on"}
    data["target"].update(target)
    return parse_spec(data)


def test_the_labels_table_is_created_from_the_spec_and_mapped_on_load(warehouse):
    spec = spec_with_labels(positive="Yes", negative="No")
    apply_schema(warehouse, spec)
    cols = fetch(warehouse, "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE "
                            "table_schema = 'crm' AND table_name = 'churn_outcomes' ORDER BY ordinal_position")
    assert cols == [("customer_id", "bigint", "NO"), ("as_of_date", "date", "NO"), ("churned", "text", "NO"),
                    ("known_on", "date", "NO")]
    pk = fetch(warehouse, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
                          "a.attnum = ANY(i.indkey) WHERE i.indrelid = 'crm.churn_outcomes'::regclass AND i.indisprimary "
                          "ORDER BY a.attname")
    assert pk == [("as_of_date",), ("customer_id",)]
    fetch(warehouse, "INSERT INTO crm.churn_outcomes VALUES (1, %s, 'Yes', %s), (2, %s, 'No', %s), "
                     "(3, %s, 'Maybe', %s), (4, %s, 'Yes', %s)", (D, D, D, D, D, D, D, D + dt.timedelta(days=5)))
    assert labels.load_labels(warehouse, spec, D) == 2  # 'Maybe' maps to nothing; row 4 is not known yet
    assert fetch(warehouse, "SELECT customer_id, churned, label_available_on FROM features.churn_labels "
                            "ORDER BY 1") == [(1, 1, D), (2, 0, D)]
    apply_schema(warehouse, spec)  # idempotent: the table and its rows stay
    assert fetch(warehouse, "SELECT count(*) FROM crm.churn_outcomes") == [(4,)]


def test_an_existing_labels_table_is_left_as_its_owner_made_it(warehouse):
    fetch(warehouse, "CREATE SCHEMA crm; CREATE TABLE crm.churn_outcomes (customer_id bigint, as_of_date date, "
                     "churned smallint, known_on date, note text)")
    spec = spec_with_labels()
    apply_schema(warehouse, spec)
    assert fetch(warehouse, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'crm' AND "
                            "table_name = 'churn_outcomes'") == [(5,)]
    fetch(warehouse, "INSERT INTO crm.churn_outcomes VALUES (1, %s, 1, %s, 'x'), (2, %s, NULL, %s, 'unknown')",
          (D, D, D, D))
    assert labels.load_labels(warehouse, spec, D) == 1  # a NULL label is no label
