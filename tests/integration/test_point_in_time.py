"""Point in time through a real retrain DAG run: a re-run of a backfilled date D - drift-triggered, with
every later day already ingested, validated and labeled, and a newer champion live - trains the model
it trained the first time (labels known on D, data up to D) and scores D with the champion of D, so
its predictions are byte for byte the first pass's. The as-of reads and the champion of a date step
by step: tests/integration/test_fair_gate.py; a whole backfill loaded vs not loaded, then re-run:
tests/e2e/test_backfill_point_in_time.py."""

from __future__ import annotations

import pytest
from airtrain.registry import champions
from airtrain.serving import scoring
from airtrain.steps import retrain

from tests.integration.dagtest import fetch, template_project
from tests.integration.test_faults import DAYS, SMALL, START, assert_invariants, day

pytestmark = pytest.mark.integration

BOOT = 10  # the faults template: v1 trained as of day 9 on the bootstrap range, 30 days landed
#: what the monitor sets when it triggers a retrain; such a run used to train as of the newest
#: validated day in the warehouse at the moment it ran, and every run scored with the live champion
DRIFT = "drift: 3 of 8 features drifted (test)"


def predictions_md5(wh, d) -> tuple:
    """The date's predictions: (versions, md5 of every entity's version and score)."""
    return fetch(wh, "SELECT array_agg(DISTINCT model_version ORDER BY model_version), md5(string_agg(customer_id "
                     "|| ':' || model_version || ':' || score, ',' ORDER BY customer_id, model_version)) "
                     "FROM predictions.churn WHERE as_of_date = %s", (d,))[0]


def test_a_rerun_of_a_backfilled_date_trains_and_scores_as_of_that_date(tmp_path_factory, pg_server, airflow_db,
                                                                       monkeypatch):
    p, _ = template_project(tmp_path_factory, pg_server, "faults", overrides=SMALL, start=START, days=DAYS,
                            bootstrap={"date": str(START), "end_date": str(day(BOOT - 1))}, monkeypatch=monkeypatch)
    spec, wh, d = p.spec(), p.warehouse, day(BOOT)
    later = [day(i) for i in range(BOOT, BOOT + 4)]  # D and three later days: ingested, validated, labeled
    retrain.ingest(wh, spec, later, "backfill", p.root)
    retrain.validate(wh, spec, later, "backfill", today=later[-1], reports_root=p.root / "reports")
    from airtrain.data.labels import load_labels

    assert load_labels(wh, spec, later[-1]) > 0
    # the backfill's first pass of D: the steps its run took (train as of D, promote, score D) ...
    first = retrain.train(wh, spec, d, "first")
    champions.promote(wh, spec, first["version"], action="force_promote", actor="test", reason="first pass",
                     run_id="first")
    scoring.score_date(wh, spec, d, run_id="first")
    scored = predictions_md5(wh, d)
    assert scored[0] == [first["version"]]
    # ... then a later day of the backfill promoted a newer champion
    newer = retrain.train(wh, spec, later[-1], "newer")["version"]
    champions.promote(wh, spec, newer, action="force_promote", actor="test", reason="a later day", run_id="newer")
    # the re-run of D, drift-triggered, through the DAG
    dr, states = p.run({"date": str(d), "trigger_reason": DRIFT})
    assert str(dr.state) == "success", states
    trained = dr.get_task_instance("train").xcom_pull(task_ids="train")
    assert (trained["version"], trained["as_of"], trained["data_hash"]) == (first["version"], str(d),
                                                                           first["data_hash"]), trained
    assert predictions_md5(wh, d) == scored  # scored by the champion of D, not the live one
    assert champions.champion_version(wh, spec) == newer and champions.champion_as_of(wh, spec, d) == first["version"]
    gate = fetch(wh, "SELECT metrics->'gate'->>'refused' FROM registry.model_versions WHERE version = %s",
                 (first["version"],))[0][0]
    assert gate in ("out_of_order", "no_fair_comparison"), gate  # the re-run never demotes the newer champion
    assert_invariants(p)
