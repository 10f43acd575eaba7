"""Changing the spec of a running pipeline as an operator would (issue 27), through real DAG runs:
edit the spec, run before migrating (refused by ``prepare``), ``airtrain migrate``, re-run the newest
date, monitor it, retire and remove a feature, try a rollback, re-run with a bad file.

Starts from the retrain tests' booted template: 14 landed days, champion v1 trained by a bootstrap
run over the first 12 and scoring the 12th (labels arrive one day late)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from airtrain import migrate

from tests.integration.dagtest import ROOT, TEST_SPEC, Project, fetch, template_project

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START = dt.date(2026, 1, 1)
DAYS = 14
ROWS = 400
LAST = START + dt.timedelta(days=11)
FEATURES = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())["features"]


def features(*added: dict, **edits) -> list[dict]:
    out = [{**f, **(edits.get(f["name"]) or {})} for f in FEATURES if edits.get(f["name"], {}) is not None]
    return out + list(added)


@pytest.fixture
def project(tmp_path_factory, pg_server, monkeypatch, airflow_db) -> Project:
    p, _ = template_project(tmp_path_factory, pg_server, "rt_booted", overrides=TEST_SPEC, start=START, days=DAYS,
                            rows=ROWS, bootstrap={"date": str(START), "end_date": str(LAST)}, monkeypatch=monkeypatch)
    return p


def champion(p: Project) -> int:
    return fetch(p.warehouse, "SELECT version FROM registry.champions")[0][0]


def test_edit_the_spec_migrate_and_re_run_through_the_dags(project, capfd, monkeypatch):
    p, wh = project, project.warehouse
    monkeypatch.setenv("AIRTRAIN_AUTO_MIGRATE", "0")  # as in production: prepare only verifies
    assert champion(p) == 1
    charges = np.array([r[0] for r in fetch(wh, "SELECT monthly_charges FROM features.churn WHERE as_of_date = %s",
                                            (LAST,))])
    cap = float(np.quantile(charges, 0.9))
    loyalty = {"name": "loyalty_score", "type": "float", "min": 0, "max": 1, "since": str(START + dt.timedelta(DAYS))}
    edited = features(loyalty, payment_method={"model_input": False}, tenure_months={"type": "float"},
                      monthly_charges={"max": cap})
    p.respec(TEST_SPEC, {"features": edited})
    # 1. not migrated yet: the run stops at prepare, at once, saying what is pending; nothing changes
    dr, states = p.run({"date": str(LAST)})
    out, err = capfd.readouterr()
    assert str(dr.state) == "failed" and states["prepare"] == "failed" and states["validate"] == "upstream_failed"
    assert "widen features.churn.tenure_months bigint -> double precision" in out + err
    # 2. migrate: the new column, the widening
    assert migrate.main(["--url", wh.uri, "--spec-dir", str(p.spec_dir)]) == 0
    # 3. re-run the newest date under the new spec (its file predates loyalty_score: `since` says so)
    dr, states = p.run({"date": str(LAST), "force_promote": True, "reason": "retire payment_method"})
    assert str(dr.state) == "success", states
    assert champion(p) == 2
    (lineage,), = fetch(wh, "SELECT lineage FROM registry.model_versions WHERE version = 2")
    assert "payment_method" not in lineage["model_inputs"] and "loyalty_score" not in lineage["model_inputs"]
    assert [d["feature"] for d in lineage["inputs_dropped"]] == ["loyalty_score"]
    quarantined = int((charges > cap).sum())
    assert fetch(wh, "SELECT rows_quarantined, blocked FROM monitoring.validation_runs WHERE partition_date = %s",
                 (LAST,)) == [(quarantined, False)]
    # the date holds the new champion's scores only: no quarantined customer keeps v1's score of it
    assert fetch(wh, "SELECT model_version, count(*) FROM predictions.churn WHERE as_of_date = %s GROUP BY 1",
                 (LAST,)) == [(2, ROWS - quarantined)]
    # 4. the monitor: the tighter max is not drift, the new column is named as not checked
    from airtrain_airflow.factory import build_monitor_dag

    mon = build_monitor_dag(p.spec()).test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(LAST)})
    assert str(mon.state) == "success"
    (reason, details), = fetch(wh, "SELECT reason, details FROM monitoring.drift_decisions WHERE window_end = %s",
                               (LAST,))
    assert "not checked: loyalty_score" in reason and "monthly_charges" not in details["drifted_columns"]
    # 5. payment_method can go now (v2 does not use it); a rollback to v1 (which does) is refused up front
    p.respec(TEST_SPEC, {"features": [f for f in edited if f["name"] != "payment_method"]})
    assert migrate.main(["--url", wh.uri, "--spec-dir", str(p.spec_dir)]) == 0
    dr, states = p.run({"rollback_version": 1, "reason": "back to v1", "date": str(LAST)})
    out, err = capfd.readouterr()
    assert str(dr.state) == "failed" and states["check_params"] == "failed"
    assert "its model input 'payment_method' is no longer in the spec" in out + err
    assert champion(p) == 2
    # 6. a re-delivered file without a column: the re-run is blocked and the date stays as it was
    before = fetch(wh, "SELECT count(*), max(_run_id) FROM features.churn WHERE as_of_date = %s", (LAST,))
    path = p.landing / f"{LAST}.csv"
    pd.read_csv(path).drop(columns=["region"]).to_csv(path, index=False)
    dr, states = p.run({"date": str(LAST)})
    assert str(dr.state) == "failed" and states["validate"] == "failed"
    assert fetch(wh, "SELECT count(*), max(_run_id) FROM features.churn WHERE as_of_date = %s", (LAST,)) == before
    (blocked, attempt), = fetch(wh, "SELECT blocked, blocked_attempt FROM monitoring.validation_runs "
                                    "WHERE partition_date = %s", (LAST,))
    assert blocked is False and "column 'region' is missing" in attempt["block_reasons"][0]
    assert fetch(wh, "SELECT count(*) FROM predictions.churn WHERE as_of_date = %s", (LAST,)) == [(ROWS - quarantined,)]
