"""Per-prediction explanations in the predictions table and the monitor's fairness alert on
realized labels (issue 13), on a real PostgreSQL warehouse with real dag.test() runs.

One session template: the simulator's ``group_disparity`` scenario (``age_band`` is kept and
validated but not a model input; customers under 30 churn more), a real retrain DAG run that
trains the champion and scores the last day with ``scoring.explain: {top_k: 3}``, and three
more days scored by the champion so the monitor has a labeled window."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from airtrain.model import explain
from airtrain.model.training import features_frame
from airtrain.registry import champions, versions
from airtrain.serving import scoring
from airtrain.serving.tables import table_columns
from airtrain.spec import parse_spec
from airtrain.steps.schema import apply_schema, verify_schema
from airtrain.warehouse.ddl import SchemaBehindError

from tests.integration.dagtest import ROOT, TEST_SPEC, Project, fetch, merged, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 4, 1)
TRAIN_DAYS = 10
SCORED = [START + dt.timedelta(days=TRAIN_DAYS - 1 + i) for i in range(4)]  # the DAG scores the first
ROWS = 300
TOP_K = 3
AGE_BAND = {"name": "age_band", "type": "category", "allowed": ["under_30", "30_to_64", "65_plus"],
            "model_input": False}
FEATURES = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())["features"]
WATCH = {"metric": "demographic_parity_difference", "attribute": "age_band"}
SPEC = merged(TEST_SPEC, {
    "features": [*FEATURES, AGE_BAND],
    "training": {"min_rows": 1000, "window_days": 8, "holdout_days": 2},
    "scoring": {"shadow": False, "explain": {"top_k": TOP_K}},
    "fairness": {"sensitive": ["age_band"], "min_group_rows": 30, "gates": [],
                 "monitor": [{**WATCH, "threshold": 0.05}]},
    # labels come a day late: the monitor of SCORED[-1] judges SCORED[-3..-2] (600 labeled rows)
    "monitoring": {"window_days": 2, "min_rows": 300},
})


def _score_more_days(p: Project) -> None:
    """The champion scores the days after its training window (the real scoring path, no DAG)."""
    spec, wh = p.spec(), p.warehouse
    from airtrain.steps import retrain

    retrain.ingest(wh, spec, SCORED[1:], "more", p.root)
    retrain.validate(wh, spec, SCORED[1:], "more", today=SCORED[-1], reports_root=p.root / "reports")
    for d in SCORED[1:]:
        scoring.score_date(wh, spec, d, run_id=f"more_{d}", shards=2)


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    p, mp = template_project(
        tmp_path_factory, pg_server, "explmon", overrides=SPEC, start=START, days=TRAIN_DAYS + 3, rows=ROWS,
        scenario="group_disparity",
        bootstrap={"date": str(START), "end_date": str(SCORED[0]), "force_train": True},
        setup=_score_more_days)
    yield p
    mp.undo()


def predictions(wh, date):
    return fetch(wh, "SELECT customer_id, score, explain_features, explain_contributions FROM predictions.churn "
                     "WHERE as_of_date = %s ORDER BY customer_id", (date,))


def test_every_scored_row_has_exactly_top_k_spec_features_largest_first(proj):
    spec, wh = proj.spec(), proj.warehouse
    rows = predictions(wh, SCORED[0])  # written by the retrain DAG run's publish_predictions
    assert len(rows) == ROWS
    inputs = set(spec.model_feature_names)
    for _, _, feats, contribs in rows:
        assert len(feats) == TOP_K and len(contribs) == TOP_K and len(set(feats)) == TOP_K
        assert set(feats) <= inputs  # model inputs only: never age_band (kept, not used)
        mags = [abs(c) for c in contribs]
        assert mags == sorted(mags, reverse=True)
    # something is explained: most rows have a non-zero top contribution
    assert sum(abs(r[3][0]) > 0 for r in rows) > 0.9 * ROWS


def test_stored_contributions_agree_with_a_recomputation_by_the_method(proj):
    spec, wh = proj.spec(), proj.warehouse
    version = champions.champion_version(wh, spec)
    model = versions.load_artifact(wh, spec, version)
    cols = ", ".join(["customer_id", *spec.feature_names])
    feats = pd.DataFrame(fetch(wh, f"SELECT {cols} FROM features.churn WHERE as_of_date = %s "  # noqa: S608
                                   "ORDER BY customer_id LIMIT 5", (SCORED[0],)),
                         columns=["customer_id", *spec.feature_names])
    stored = {r[0]: r for r in predictions(wh, SCORED[0])}
    ref = explain.reference_values(model, explain.model_inputs(model, spec))
    base = model.predict_proba(features_frame(feats, spec)[list(ref)])[:, 1]
    for i, row in feats.iterrows():
        _, score, names, values = stored[row["customer_id"]]
        assert score == pytest.approx(base[i], abs=1e-12)
        for name, value in zip(names, values, strict=True):
            moved = feats.iloc[[i]].copy()
            moved[name] = ref[name]  # the method by hand: score minus the score at the reference
            p_moved = model.predict_proba(features_frame(moved, spec)[list(ref)])[0, 1]
            assert value == pytest.approx(base[i] - p_moved, abs=1e-12)


def test_a_rescore_replaces_the_date_with_no_duplicates(proj):
    spec, wh = proj.spec(), proj.warehouse
    before = predictions(wh, SCORED[1])
    res = scoring.score_date(wh, spec, SCORED[1], run_id="again", shards=3)
    assert res["replaced"] is True
    after = predictions(wh, SCORED[1])
    assert len(after) == len(before) == ROWS and len({r[0] for r in after}) == ROWS
    assert [(r[0], r[2]) for r in after] == [(r[0], r[2]) for r in before]  # deterministic
    assert np.allclose([r[3] for r in after], [r[3] for r in before], atol=1e-12)


def test_explanations_are_off_by_default_no_columns(warehouse):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["scoring"].pop("explain")
    spec = parse_spec(data)
    assert table_columns(spec, "predictions_explain") == []
    apply_schema(warehouse, spec)
    cols = fetch(warehouse, "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
                            "'predictions' AND column_name LIKE 'explain%%'")
    assert cols == []
    assert fetch(warehouse, "SELECT to_regclass('monitoring.fairness_metrics') IS NOT NULL") == [(True,)]
    # turning it on is a schema change: the daily run refuses until the deploy-time migration ran,
    # which adds the columns (nullable, on the partitioned parents and so on every partition)
    on = parse_spec(yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text()))
    with pytest.raises(SchemaBehindError, match="airtrain migrate|migrat"):
        verify_schema(warehouse, on)
    report = apply_schema(warehouse, on)
    assert sorted(report.columns_added) == sorted(f"predictions.{t}.{c}" for t in ("churn", "churn_shadow")
                                                  for c in ("explain_features", "explain_contributions"))
    assert verify_schema(warehouse, on)["schema"] == "verified"
    types = fetch(warehouse, "SELECT DISTINCT column_name, data_type FROM information_schema.columns WHERE "
                             "table_schema = 'predictions' AND column_name LIKE 'explain%%' ORDER BY 1")
    assert types == [("explain_contributions", "ARRAY"), ("explain_features", "ARRAY")]


def test_the_churn_spec_enables_top_3():
    spec = parse_spec(yaml.safe_load(Path(ROOT / "include/pipelines/churn.yaml").read_text()))
    assert spec.scoring.explain is not None and spec.scoring.explain.top_k == 3


# ---- B: the monitor's fairness alert on realized labels -----------------------------------------


def run_monitor(p: Project, date: dt.date):
    from airtrain_airflow.factory import build_monitor_dag

    dr = build_monitor_dag(p.spec()).test(logical_date=dt.datetime.now(dt.UTC), run_conf={"date": str(date)})
    return dr, {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def fairness_rows(wh, date):
    return fetch(wh, "SELECT attribute, metric, status, value, threshold, n_rows, labeled_start, labeled_end, "
                     "excluded_groups, alerted_at IS NOT NULL, reason, jsonb_array_length(groups) "
                     "FROM monitoring.fairness_metrics WHERE window_end = %s", (date,))


def alerts(caplog):
    return [r.getMessage() for r in caplog.records if "ALERT [churn] fairness disparity" in r.getMessage()]


def test_a_real_disparity_past_the_threshold_alerts_once_per_window(proj, caplog):
    from airtrain_airflow.factory import build_monitor_dag

    from tests.integration.tabletouch import check_lineage, record_table_touches

    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    proj.respec(SPEC)
    end = SCORED[-1]
    with record_table_touches(proj.warehouse.uri) as touches:  # what each task read and wrote
        dr, states = run_monitor(proj, end)
    assert str(dr.state) == "success" and states["notify"] == "success", states
    # the monitor's OpenLineage datasets are the tables PostgreSQL saw its tasks read and write: drift_check
    # writes monitoring.fairness_metrics, notify marks the breach alerted there (no retrain: no decision row)
    problems = check_lineage(touches, build_monitor_dag(proj.spec()), ["drift_check", "notify"],
                             idle_outputs=frozenset({"monitoring.drift_decisions"}))
    assert not problems, "\n".join(problems)
    [(attr, metric, status, value, thr, n, lo, hi, excluded, alerted, reason, groups)] = fairness_rows(
        proj.warehouse, end)
    assert (attr, metric, status, thr) == ("age_band", "demographic_parity_difference", "breach", 0.05)
    assert (lo, hi) == (SCORED[-3], SCORED[-2]) and n == 2 * ROWS and groups == 3 and excluded == []
    assert value > 0.05 and alerted  # a real gap between age bands in who the champion flags
    sent = alerts(caplog)
    assert len(sent) == 1 and f"{value:.3f}" in sent[0] and "age_band" in sent[0]
    # the same number is in drift_metrics beside the other signals
    assert fetch(proj.warehouse, "SELECT value, drifted FROM monitoring.drift_metrics WHERE window_end = %s AND "
                                 "metric = 'fairness.demographic_parity_difference'", (end,)) == [(value, True)]
    # a re-run of the window replaces its rows and does not alert again
    caplog.clear()
    run_monitor(proj, end)
    again = fairness_rows(proj.warehouse, end)
    assert len(again) == 1 and again[0][2] == "breach" and again[0][9] and alerts(caplog) == []


def test_a_disparity_below_the_threshold_is_ok_and_silent(proj, caplog):
    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    end = SCORED[-2]
    proj.respec(SPEC, {"fairness": {"monitor": [{**WATCH, "threshold": 0.9}]}})
    dr, states = run_monitor(proj, end)
    assert str(dr.state) == "success", states
    [row] = fairness_rows(proj.warehouse, end)
    assert row[2] == "ok" and row[3] is not None and row[3] <= 0.9 and not row[9]
    assert alerts(caplog) == []


def test_too_few_labeled_rows_per_group_is_not_evaluated_never_ok(proj, caplog):
    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    end = SCORED[-2]
    proj.respec(SPEC, {"fairness": {"min_group_rows": 10_000, "monitor": [{**WATCH, "threshold": 0.05}]}})
    run_monitor(proj, end)
    [row] = fairness_rows(proj.warehouse, end)
    assert row[2] == "not_evaluated" and row[3] is None and sorted(row[8]) == ["30_to_64", "65_plus", "under_30"]
    assert "not evaluated" in row[10] and alerts(caplog) == []
    metric = fetch(proj.warehouse, "SELECT value, drifted FROM monitoring.drift_metrics WHERE window_end = %s AND "
                                   "metric = 'fairness.demographic_parity_difference'", (end,))
    assert metric == [(None, None)]  # no value, and not "not drifted" either
