"""Point in time, a whole backfill through real retrain DAG runs (``make test-e2e``; about 40 s of DAG
runs on an idle machine): a run for partition D sees only the rows of dates up to D, the labels known
on D and the champion changes effective on D, whatever else the warehouse holds. A backfill whose
later days are already loaded trains the same models and writes the same predictions as one where
they are not, and re-running it changes nothing. The same in short on every ``make test``:
tests/integration/test_point_in_time.py (one DAG run) and, step by step, tests/integration/test_fair_gate.py."""

from __future__ import annotations

import pytest
from airtrain.registry import champions
from airtrain.steps import retrain

from tests.integration.dagtest import fetch, template_project
from tests.integration.test_faults import DAYS, SMALL, START, assert_invariants, day

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BOOT = 10  # the faults template: v1 trained as of day 9 on the bootstrap range, 30 days landed
#: what the monitor sets when it triggers a retrain: such a run used to train as of the newest
#: validated day in the warehouse at the moment it ran
DRIFT = "drift: 3 of 8 features drifted (test)"


def project(tmp_path_factory, pg_server, monkeypatch):
    p, _ = template_project(tmp_path_factory, pg_server, "faults", overrides=SMALL, start=START, days=DAYS,
                            bootstrap={"date": str(START), "end_date": str(day(BOOT - 1))}, monkeypatch=monkeypatch)
    return p


def backfill(p, monkeypatch, dates) -> dict:
    """One drift-triggered retrain run per date, in date order; what each trained and scored."""
    p.activate(monkeypatch)
    out = {}
    for d in dates:
        dr, states = p.run({"date": str(d), "trigger_reason": DRIFT})
        assert str(dr.state) == "success", states
        trained = fetch(p.warehouse, "SELECT version, lineage->>'as_of', lineage->>'data_hash' FROM "
                                     "registry.model_versions WHERE lineage->>'data_hash' = %s",
                        (dr.get_task_instance("train").xcom_pull(task_ids="train")["data_hash"],))
        out[d] = {"trained": trained, "predictions": predictions_md5(p, d)}
    return out


def predictions_md5(p, d) -> tuple:
    """The date's predictions as (versions, md5 of every entity's version and score)."""
    return fetch(p.warehouse, "SELECT array_agg(DISTINCT model_version ORDER BY model_version), md5(string_agg("
                              "customer_id || ':' || model_version || ':' || score, ',' ORDER BY customer_id, "
                              "model_version)) FROM predictions.churn WHERE as_of_date = %s", (d,))[0]


def test_a_backfill_gives_the_same_models_and_predictions_whatever_later_days_are_loaded(
        tmp_path_factory, pg_server, airflow_db, monkeypatch):
    dates = [day(BOOT), day(BOOT + 1)]
    # A: a warehouse where the days after the backfill were already ingested and validated, and their
    # labels (one day late) already loaded into the labels table
    a = project(tmp_path_factory, pg_server, monkeypatch)
    spec, later = a.spec(), [day(i) for i in range(BOOT, BOOT + 6)]
    retrain.ingest(a.warehouse, spec, later, "loaded-before", a.root)
    retrain.validate(a.warehouse, spec, later, "loaded-before", today=later[-1], reports_root=a.root / "reports")
    from airtrain.data.labels import load_labels

    assert load_labels(a.warehouse, spec, later[-1]) > 0
    first = backfill(a, monkeypatch, dates)
    # B: the same backfill where nothing after it was loaded
    b = project(tmp_path_factory, pg_server, monkeypatch)
    alone = backfill(b, monkeypatch, dates)
    for d in dates:
        (version, as_of, _), = first[d]["trained"]
        assert as_of == str(d), (d, first[d])  # trained as of its own date, not the newest loaded one
    assert first == alone, (first, alone)
    # each date was scored by the champion of that date; in date order that is the live one
    assert [first[d]["predictions"][0] for d in dates] == [[champions.champion_as_of(a.warehouse, spec, d)]
                                                           for d in dates]
    # A again: re-running the backfill (its newest champion is live by now) changes nothing
    assert backfill(a, monkeypatch, dates) == first
    assert_invariants(a)
