"""Hostile configuration: every configurable SQL identifier and connection name is allow-listed when
the spec loads - so a hostile value is refused before any SQL can run - and the SQL helpers check
again (defence in depth)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from airtrain.spec import SpecError, parse_spec
from airtrain.warehouse.connection import ident

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
POSTGRES_SOURCE = {"kind": "postgres", "schema": "src", "table": "customers", "date_column": "as_of_date"}

PAYLOADS = [
    'x"; DROP TABLE registry.champions; --',
    "x'; DELETE FROM registry.model_versions; --",
    "churn; TRUNCATE registry.promotion_log",
    "a b",
    "Robert')--",
    "x/*c*/",
    "pg_catalog.pg_authid",
    "ｓｅｌｅｃｔ",  # full-width look-alikes
    "a" * 64,  # 64 bytes: over PostgreSQL's 63
    "é" * 32,  # 64 bytes in UTF-8
    "",
    "select",
]

# (path in the spec, how to put the payload there)
KEYS = [
    ("name", None), ("entity_key", None), ("date_column", None), ("features[0].name", None), ("target.name", None),
    ("warehouse.raw_schema", None), ("warehouse.features_schema", None), ("warehouse.quarantine_schema", None),
    ("warehouse.registry_schema", None), ("warehouse.predictions_schema", None),
    ("warehouse.monitoring_schema", None), ("warehouse.reader_role", None),
    ("labels.schema", None), ("labels.table", None), ("labels.available_column", None),
    ("source.schema", POSTGRES_SOURCE), ("source.table", POSTGRES_SOURCE), ("source.date_column", POSTGRES_SOURCE),
    ("evaluation.slices[0]", None), ("monitoring.trigger.critical_features[0]", None),
    ("monitoring.columns.<key>", None),
]


def put(data: dict, path: str, value: str) -> dict:
    d = copy.deepcopy(data)
    if path == "monitoring.columns.<key>":
        d["monitoring"]["columns"] = {value: {"method": "psi"}}
        return d
    node = d
    parts = path.replace("]", "").replace("[", ".").split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return d


@pytest.mark.parametrize("path, source", KEYS, ids=[k for k, _ in KEYS])
@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"p{i}" for i in range(len(PAYLOADS))])
def test_hostile_identifiers_are_refused_when_the_spec_loads(path, source, payload):
    data = copy.deepcopy(GOOD)
    if source is not None:
        data["source"] = dict(source)
    data = put(data, path, payload)
    with pytest.raises(SpecError) as err:
        parse_spec(data, "churn.yaml")
    key = path.split("[")[0].replace(".<key>", "").replace("source.schema", "source")
    assert key.split(".")[0] in str(err.value), str(err.value)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_sql_helper_refuses_them_too(payload):
    with pytest.raises(ValueError):
        ident(payload)


@pytest.mark.parametrize("path, value", [
    ("warehouse.conn_id", "warehouse'; --"), ("warehouse.conn_id", "a b"),
    ("alerts.slack_conn_id", "x;rm -rf /"), ("alerts.webhook_conn_id", "http://evil/"),
    ("alerts.smtp_to", ["a@b.c; rm -rf /"]), ("alerts.smtp_to", ["not-an-address"]),
    ("source.path", "../../etc"), ("source.path", "/etc"), ("source.pattern", "/etc/passwd"),
    ("source.pattern", "/etc/{date}"), ("source.pattern", "../{date}.csv"), ("source.pattern", "a/../../{date}.csv"),
])
def test_hostile_connection_names_paths_and_addresses_are_refused(path, value):
    data = copy.deepcopy(GOOD)
    section, key = path.split(".")
    data.setdefault(section, {})[key] = value
    with pytest.raises(SpecError):
        parse_spec(data, "churn.yaml")


def test_the_good_spec_still_loads():
    assert parse_spec(copy.deepcopy(GOOD), "churn.yaml").name == "churn"
