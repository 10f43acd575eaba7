"""Evolving the spec of a running pipeline (issue 27) on real PostgreSQL: what ``airtrain migrate``
applies and refuses, a rollback that checks first, a re-score that replaces the whole date, a blocked
re-run that keeps the validation in force, the version reuse key, and one "edit the spec, migrate,
re-run an old date, monitor, retrain" story.

The warehouses are copies of the scoring template (tests/integration/test_scoring.py): 12 validated
days of 600 rows and a champion v1 trained as of the last one."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from airtrain import migrate
from airtrain.data.validation import BatchBlockedError
from airtrain.monitoring import check
from airtrain.registry import cards, champions
from airtrain.serving import can_score, publish, scoring
from airtrain.serving.target import ScoringTarget, target_for
from airtrain.spec import hashing
from airtrain.steps import release, retrain, schema
from airtrain.steps.schema import apply_schema, verify_schema
from airtrain.warehouse.ddl import SchemaBehindError

from tests.integration.dagtest import ROOT, TEST_SPEC, Project, fetch, hand_staged, template_project
from tests.integration.test_scoring import DAYS, LAST, ROWS, START, _validate_and_promote

pytestmark = pytest.mark.integration

FEATURES = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())["features"]


def features(*added: dict, **edits) -> list[dict]:
    """churn.yaml's features with ``edits`` ({name: changes, or None to remove it}) and ``added`` ones."""
    out = [{**f, **(edits.get(f["name"]) or {})} for f in FEATURES if edits.get(f["name"], {}) is not None]
    return out + list(added)


@pytest.fixture
def project(tmp_path_factory, pg_server, monkeypatch) -> Project:
    p, _ = template_project(tmp_path_factory, pg_server, "scoring", overrides=TEST_SPEC, start=START, days=DAYS,
                            rows=ROWS, setup=_validate_and_promote, monkeypatch=monkeypatch)
    return p


def _migrate(p: Project) -> int:
    return migrate.main(["--url", p.warehouse.uri, "--spec-dir", str(p.spec_dir)])


def _validate(p: Project, run_id: str, *, ingest: bool = False) -> list[dict]:
    spec = p.spec()
    if ingest:
        retrain.ingest(p.warehouse, spec, [LAST], run_id, p.root)
    return retrain.validate(p.warehouse, spec, [LAST], run_id, today=LAST, reports_root=p.root / "reports")


def test_migrate_widens_int_to_float_and_refuses_any_other_type_change(project, capsys):
    wh = project.warehouse
    before = fetch(wh, "SELECT count(*), sum(tenure_months) FROM features.churn")
    # category -> int is refused as a whole, naming the column, both types and the procedure; nothing changes
    project.respec(TEST_SPEC, {"features": features(tenure_months={"type": "float"},
                                                    region={"type": "int", "allowed": None})})
    assert _migrate(project) == 1
    err = capsys.readouterr().err
    assert ("feature 'region': features.churn.region is text (category) in the warehouse but the spec says int "
            "(bigint)") in err and "docs/CHANGING_A_SPEC.md" in err and "since: <first date>" in err
    with pytest.raises(SchemaBehindError, match="refuses"):
        verify_schema(wh, project.spec())
    types = "SELECT table_schema, data_type FROM information_schema.columns WHERE column_name = 'tenure_months' " \
            "AND table_schema IN ('features', 'monitoring') ORDER BY 1"
    assert fetch(wh, types) == [("features", "bigint"), ("monitoring", "bigint")]
    # int -> float is a widening: prepare names it, migrate applies it (features and drift reference tables)
    project.respec(TEST_SPEC, {"features": features(tenure_months={"type": "float"})})
    spec = project.spec()
    with pytest.raises(SchemaBehindError, match=r"widen features\.churn\.tenure_months bigint -> double precision"):
        schema.prepare(wh, spec, auto_migrate=False)
    assert _migrate(project) == 0
    assert "columns widened: ['features.churn.tenure_months bigint -> double precision'" in capsys.readouterr().out
    assert fetch(wh, types) == [("features", "double precision"), ("monitoring", "double precision")]
    assert fetch(wh, "SELECT count(*), sum(tenure_months)::bigint FROM features.churn") == before
    assert schema.prepare(wh, spec, auto_migrate=False)["schema"] == "verified"
    [summary] = _validate(project, "float-rerun")  # the daily COPY of float values works
    assert not summary["blocked"] and summary["rows_valid"] == ROWS


def test_a_feature_a_live_version_uses_cannot_be_removed_and_a_rollback_checks_first(project, capsys):
    wh = project.warehouse
    project.respec(TEST_SPEC, {"features": features(payment_method=None)})
    assert _migrate(project) == 1
    err = capsys.readouterr().err
    assert "feature 'payment_method' was removed from the spec, but v1 (champion) use(s) it" in err
    assert "model_input: false" in err
    with pytest.raises(SchemaBehindError, match=r"v1 \(champion\)"):
        verify_schema(wh, project.spec())
    # the documented way: keep it (validated, not a model input) until a champion trained without it is live
    project.respec(TEST_SPEC, {"features": features(payment_method={"model_input": False})})
    spec = project.spec()
    assert _migrate(project) == 0
    v2 = retrain.train(wh, spec, LAST, "no-payment")["version"]
    ev = retrain.evaluate(wh, spec, v2, "no-payment", LAST)
    assert release.promote(wh, spec, ev, run_id="no-payment", actor="test", force=True,
                         reason="payment_method is retired")["promoted"]
    # review 8: a challenger waiting for a person's approval is live too (the approval would make it champion)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO registry.gate_decisions (pipeline, run_id, version, champion_version, passed, "
                    "outcome, reason) VALUES ('churn', 'wait-v1', 1, %s, true, 'awaiting approval', 'gate passed')",
                    (v2,))
    project.respec(TEST_SPEC, {"features": features(payment_method=None)})
    assert _migrate(project) == 1
    assert "v1 (awaiting approval) use(s) it" in capsys.readouterr().err
    release.record_approval(wh, project.spec(), run_id="wait-v1", version=1, champion_version=v2,
                            decision={"decision": "rejected", "responded_by": "vera", "comment": "no"})
    # now it may go: no live version needs it (the column stays, NULL for the dates validated from now on)
    project.respec(TEST_SPEC, {"features": features(payment_method=None)})
    spec = project.spec()
    assert _migrate(project) == 0
    assert "no longer in the spec (kept, NULL for new dates): ['payment_method']" in capsys.readouterr().out
    _validate(project, "after-removal")
    assert fetch(wh, "SELECT count(payment_method), count(*) FROM features.churn WHERE as_of_date = %s",
                 (LAST,)) == [(0, ROWS)]
    assert scoring.score_date(wh, spec, LAST, run_id="after-removal")["rows"] == ROWS  # v2 scores without it
    # a rollback to v1, which needs it, is refused before the champion changes
    assert can_score.score_problems(wh, spec, 1) == [
        "its model input 'payment_method' is no longer in the spec (validation does not fill it)"]
    with pytest.raises(can_score.VersionCannotScoreError, match="the rollback to v1 was refused"):
        release.rollback(wh, spec, 1, run_id="rb", actor="test", reason="try v1 again")
    assert champions.champion_version(wh, spec) == v2 and len(champions.promotion_log(wh, spec)) == 2
    # review 8: nor an approved promotion of it, nor the graduation of a canary of it (the same check)
    release.record_approval(wh, spec, run_id="late-v1", version=1, champion_version=v2,
                            decision={"decision": "approved", "responded_by": "vera", "comment": "ok"})
    with pytest.raises(can_score.VersionCannotScoreError, match="the approved promotion of v1 was refused"):
        release.promote_approved(wh, spec, {"version": 1, "gate_reason": "passed"}, {"champion_version": v2},
                                 run_id="late-v1", approver="vera", comment="ok")
    assert fetch(wh, "SELECT promoted, outcome LIKE 'not promoted: it cannot score%%' FROM registry.approvals "
                     "WHERE run_id = 'late-v1'") == [(False, True)]
    with wh.connect() as conn, conn.cursor() as cur:  # a canary of v1 started before the spec changed
        cur.execute("INSERT INTO registry.rollouts (pipeline, candidate_version, champion_version, fraction, salt, "
                    "started_on, status, run_id) VALUES ('churn', 1, %s, 0.1, 's', %s, 'running', 'c1')", (v2, LAST))
    with pytest.raises(can_score.VersionCannotScoreError, match="graduating the canary of v1 was refused"):
        release.decide_canary(wh, spec, "graduate", reason="looks fine", actor="user:vera", run_id="grad")
    assert champions.champion_version(wh, spec) == v2 and len(champions.promotion_log(wh, spec)) == 2


def test_a_version_whose_input_has_no_values_on_the_date_cannot_be_rolled_back_to(project):
    wh = project.warehouse
    spec = project.spec()
    with wh.connect() as conn, conn.cursor() as cur:  # the source stopped filling it (until: would say so)
        cur.execute("UPDATE features.churn SET region = NULL WHERE as_of_date = %s", (LAST,))
    assert can_score.score_problems(wh, spec, 1, LAST) == [f"its model input 'region' has no value in the {ROWS} "
                                                           f"rows of {LAST}"]
    assert can_score.score_problems(wh, spec, 1, LAST - dt.timedelta(days=1)) == []


def _staged(wh, spec, as_of: dt.date, version: int, run_id: str, keys: range) -> ScoringTarget:
    """A stage of one shard holding ``keys`` (a scoring without a model: the rows are what matters)."""
    return hand_staged(wh, spec, target_for(spec, as_of, version, "champion", run_id), run_id,
                       "SELECT g, %s, %s, 0.5, %s FROM generate_series(%s, %s) g",
                       (as_of, version, run_id, keys.start, keys.stop - 1))


def test_a_re_score_of_a_date_replaces_every_other_version_of_that_date(warehouse, tmp_path):
    from airtrain.spec import load_spec
    from airtrain_dev.demo import write_demo_spec

    spec = load_spec(write_demo_spec(ROOT / "include/pipelines/churn.yaml", tmp_path, TEST_SPEC))
    apply_schema(warehouse, spec)
    d = dt.date(2026, 3, 1)
    publish.publish(warehouse, spec, _staged(warehouse, spec, d - dt.timedelta(days=1), 1, "day-before", range(1, 51)))
    publish.publish(warehouse, spec, _staged(warehouse, spec, d, 1, "first", range(1, 51)))
    # the date re-run under new rules: 10 of its entities are quarantined now, a new champion scores it
    out = publish.publish(warehouse, spec, _staged(warehouse, spec, d, 2, "rerun", range(1, 41)))
    assert out["superseded"] == [f"churn_p{d:%Y%m%d}_v1"]
    assert fetch(warehouse, "SELECT as_of_date, model_version, count(*) FROM predictions.churn GROUP BY 1, 2 "
                            "ORDER BY 1") == [(d - dt.timedelta(days=1), 1, 50), (d, 2, 40)]
    # no entity is served the old version's score of that date any more
    assert fetch(warehouse, "SELECT count(*) FROM predictions.churn_latest WHERE as_of_date = %s AND "
                            "model_version <> 2", (d,)) == [(0,)]


def test_a_blocked_re_run_keeps_the_validation_in_force_whole(project):
    wh = project.warehouse
    state = {
        "features": "SELECT count(*), sum(monthly_charges), max(_run_id) FROM features.churn WHERE as_of_date = %s",
        "quarantine": "SELECT count(*), max(_run_id) FROM quarantine.churn WHERE _partition_date = %s",
        "labels": "SELECT count(*) FROM features.churn_labels WHERE as_of_date = %s",
        "record": "SELECT run_id, rows_valid, rows_quarantined, blocked, report_path FROM monitoring.validation_runs "
                  "WHERE partition_date = %s"}
    before = {k: fetch(wh, q, (LAST,)) for k, q in state.items()}
    path = project.landing / f"{LAST}.csv"
    good = path.read_bytes()
    pd.read_csv(path).drop(columns=["region"]).to_csv(path, index=False)  # a re-delivered file lacks a column
    with pytest.raises(BatchBlockedError, match=r"the validation of .* in force stays as it was \(run setup"):
        _validate(project, "bad-rerun", ingest=True)
    assert {k: fetch(wh, q, (LAST,)) for k, q in state.items()} == before
    (attempt,), = fetch(wh, "SELECT blocked_attempt FROM monitoring.validation_runs WHERE partition_date = %s", (LAST,))
    assert attempt["run_id"] == "bad-rerun" and "column 'region' is missing" in attempt["block_reasons"][0]
    reports = project.root / "reports" / "churn" / "validation"
    assert "BLOCKED" in (reports / f"{LAST}.blocked.html").read_text()
    assert "PASSED" in (reports / f"{LAST}.html").read_text()  # the report of the validation in force
    # the corrected file passes and replaces the state; the blocked attempt is cleared
    path.write_bytes(good)
    [summary] = _validate(project, "fixed", ingest=True)
    assert not summary["blocked"]
    assert fetch(wh, "SELECT run_id, blocked, blocked_attempt FROM monitoring.validation_runs WHERE partition_date = %s",
                 (LAST,)) == [("fixed", False, None)]


def test_a_spec_change_that_keeps_the_data_is_a_new_version_carrying_its_spec(project):
    wh = project.warehouse
    project.respec(TEST_SPEC, {"validation": {"max_quarantine_fraction": 0.25}})
    spec = project.spec()
    assert retrain.train(wh, spec, LAST, "looser")["version"] == 2  # same data, estimator, params, code: not v1
    (text,), = fetch(wh, "SELECT spec_text FROM registry.model_versions WHERE version = 2")
    assert "max_quarantine_fraction: 0.25" in text and yaml.safe_load(text)["name"] == "churn"
    card = cards.build(wh, spec, 2)
    assert card["spec"] == {"sha256": card["lineage"]["spec_sha256"], "text": text,
                            "model_spec_sha256": hashing.model_spec_sha256(spec)}
    assert "max_quarantine_fraction: 0.25" in cards.render_html(card)


def test_edit_the_spec_migrate_re_run_an_old_date_monitor_and_retrain(project, capsys):
    """Tighten a rule, add a feature, widen a type; migrate; re-run the last date; the monitor does not
    read the tighter rule as drift and names the new column it cannot compare; training drops it."""
    wh = project.warehouse
    charges = np.array([r[0] for r in fetch(wh, "SELECT monthly_charges FROM features.churn WHERE as_of_date = %s",
                                            (LAST,))])
    cap = float(np.quantile(charges, 0.88))
    loyalty = {"name": "loyalty_score", "type": "float", "min": 0, "max": 1,
               "since": str(LAST + dt.timedelta(days=1))}
    project.respec(TEST_SPEC, {"features": features(loyalty, monthly_charges={"max": cap},
                                                    tenure_months={"type": "float"})})
    spec = project.spec()
    assert _migrate(project) == 0
    out = capsys.readouterr().out
    assert "features.churn.loyalty_score" in out and "features.churn.tenure_months bigint -> double precision" in out
    # the old date's file has no loyalty_score: before `since` that is a NULL, not a missing column
    [summary] = _validate(project, "rerun", ingest=True)
    assert not summary["blocked"] and summary["rows_quarantined"] == int((charges > cap).sum()) > 0
    # the monitor, with the champion v1 (trained under the old rules): the tighter max is not drift ...
    res = check.run_check(wh, spec, LAST, run_id="monitor", reports_root=project.root / "reports")
    drifted = dict(fetch(wh, "SELECT column_name, drifted FROM monitoring.drift_metrics WHERE window_end = %s "
                             "AND metric LIKE 'drift.%%'", (LAST,)))
    assert drifted["monthly_charges"] is False and drifted["loyalty_score"] is None
    # ... and the decision says what it did not check and which rules changed since v1 was trained
    assert "not checked: loyalty_score (0 observed values in the reference of v1)" in res["reason"]
    assert "rules changed since v1 was trained (" in res["reason"]
    assert f"monthly_charges: max 500 -> {cap}" in res["reason"] and "tenure_months: type int -> float" in res["reason"]
    (details,), = fetch(wh, "SELECT details FROM monitoring.drift_decisions WHERE window_end = %s", (LAST,))
    assert details["reference_rows_excluded"]["monthly_charges"] > 0
    assert details["rule_changes"]["loyalty_score"] == ["added to the spec"]
    # review 3: a window of 7 days holds 6 days validated under the old max: they are filtered as well
    project.respec(TEST_SPEC, {"features": features(loyalty, monthly_charges={"max": cap},
                                                    tenure_months={"type": "float"}),
                               "monitoring": {"window_days": 7}})
    check.run_check(wh, project.spec(), LAST, run_id="monitor-7", reports_root=project.root / "reports")
    drifted = dict(fetch(wh, "SELECT column_name, drifted FROM monitoring.drift_metrics WHERE window_end = %s "
                             "AND metric LIKE 'drift.%%'", (LAST,)))
    (details,), = fetch(wh, "SELECT details FROM monitoring.drift_decisions WHERE window_end = %s", (LAST,))
    assert drifted["monthly_charges"] is False, details.get("scores")
    assert details["window_rows_excluded"]["monthly_charges"] > 0
    # retraining: loyalty_score has no value in the training days - dropped and recorded, never trained as NULLs
    trained = retrain.train(wh, spec, LAST, "retrain")
    assert trained["inputs_dropped"] == ["loyalty_score"]
    (lineage,), = fetch(wh, "SELECT lineage FROM registry.model_versions WHERE version = %s", (trained["version"],))
    assert "loyalty_score" not in lineage["model_inputs"] and "tenure_months" in lineage["model_inputs"]
    assert lineage["inputs_dropped"][0]["feature"] == "loyalty_score"
    card = cards.build(wh, spec, trained["version"])
    assert [f["model_input"] for f in card["features"] if f["name"] == "loyalty_score"] == [False]
    assert "no observed value in the training days" in cards.render_html(card)


def test_a_rollback_run_to_a_version_that_cannot_score_is_refused_by_check_params(project, airflow_db, capfd):
    """The same check through the DAG: the run's first task refuses it, before the champion changes."""
    project.respec(TEST_SPEC, {"features": features(payment_method=None)})  # v1 cannot score without it
    dr, states = project.run({"rollback_version": 1, "reason": "back to v1", "date": str(LAST)})
    out, err = capfd.readouterr()
    assert str(dr.state) == "failed" and states["check_params"] == "failed" and states["rollback"] != "success"
    assert ("rollback_version 1 cannot score under the current spec: its model input 'payment_method' is no longer "
            "in the spec") in out + err
    assert len(champions.promotion_log(project.warehouse, project.spec())) == 1
