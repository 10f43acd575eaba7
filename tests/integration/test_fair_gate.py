"""The promotion gate never scores the champion on rows it was trained on; a refusal is recorded with
its real reason; a run for a date reads only what was known on it and is scored by the champion of
that date. Real PostgreSQL, GX and scikit-learn through the pipeline's own steps."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.data import features
from airtrain.registry import champions
from airtrain.steps import release, retrain
from airtrain.steps.schema import apply_schema

from tests.integration.dagtest import fetch, land_days, module_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 5, 1)
DAYS = 17
# labels arrive one day late; a 10-day window with a 3-day holdout
SMALL = {"training": {"min_rows": 300, "window_days": 10, "holdout_days": 3}, "scoring": {"shadow": False}}


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server):
    p, mp = module_project(tmp_path_factory, pg_server, "fairgate", SMALL)
    land_days(p, START, DAYS, rows=200)
    spec, wh = p.spec(), p.warehouse
    apply_schema(wh, spec)
    dates = [day(i) for i in range(DAYS)]
    retrain.ingest(wh, spec, dates, "boot", p.root)
    retrain.validate(wh, spec, dates, "boot", today=dates[-1], reports_root=p.root / "reports")
    # the champion: as of day 15 -> newest labeled day 14, holdout 12..14, trained on days 5..11
    out = retrain.train(wh, spec, day(15), "champ")
    assert out["window"]["train_start"] == str(day(5)) and out["window"]["train_end"] == str(day(11))
    res = release.promote(wh, spec, retrain.evaluate(wh, spec, out["version"], "champ", day(15)), run_id="champ",
                        actor="test")
    assert res["promoted"], res
    yield p
    mp.undo()


def evaluations(p, run_id: str) -> list[tuple]:
    return fetch(p.warehouse, "SELECT role, holdout_start, holdout_end, n_rows FROM registry.evaluations WHERE "
                              "run_id = %s AND metric = 'roc_auc' AND slice_column = '' ORDER BY role", (run_id,))


def test_a_challenger_whose_holdout_the_champion_trained_on_is_refused_with_the_reason(proj):
    """Out of order: the challenger (as of day 10) holds out days 7..9, which the champion was trained
    on. Scoring the champion there would flatter it; no champion score is taken, and the registry
    records why the challenger was refused."""
    spec, wh = proj.spec(), proj.warehouse
    champion = champions.champion_version(wh, spec)
    old = retrain.train(wh, spec, day(10), "ooo")
    assert (old["window"]["holdout_start"], old["window"]["holdout_end"]) == (str(day(7)), str(day(9)))
    ev = retrain.evaluate(wh, spec, old["version"], "ooo", day(10))
    assert [r[0] for r in evaluations(proj, "ooo")] == ["challenger"]  # the champion was NOT scored on 7..9
    assert ev["champion"] is None and ev["comparison"]["refused"].startswith("no fair comparison")
    out = release.promote(wh, spec, ev, run_id="ooo", actor="test")
    assert out["promoted"] is False
    gate = fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = %s", (old["version"],))[0][0]
    assert gate["passed"] is False and gate["refused"] == "out_of_order" and "out of order" in gate["reason"], gate
    comparison = fetch(wh, "SELECT metrics->'comparison' FROM registry.model_versions WHERE version = %s",
                       (old["version"],))[0][0]
    assert f"trained on {day(5)}..{day(11)}" in comparison["refused"]
    assert champions.champion_version(wh, spec) == champion


def test_an_overlapping_holdout_is_compared_only_on_the_days_the_champion_never_saw(proj):
    """A longer holdout (6 days, 10..15) overlaps the champion's training days (5..11): champion and
    challenger are compared on 12..15 only; the challenger's own metrics stay on its whole holdout."""
    spec, wh = proj.spec(), proj.warehouse
    longer = spec.model_copy(update={"training": spec.training.model_copy(update={"holdout_days": 6})})
    new = retrain.train(wh, longer, day(16), "overlap")
    assert (new["window"]["holdout_start"], new["window"]["holdout_end"]) == (str(day(10)), str(day(15)))
    ev = retrain.evaluate(wh, longer, new["version"], "overlap", day(16))
    rows = evaluations(proj, "overlap")
    assert rows == [("challenger", day(12), day(15), 800), ("champion", day(12), day(15), 800)]
    assert ev["comparison"]["compared"] == [str(day(12)), str(day(15))]
    assert f"trained on {day(5)}..{day(11)}" in ev["comparison"]["note"]
    assert ev["challenger"] != ev["challenger_compared"]  # whole holdout vs the compared days
    metrics = fetch(wh, "SELECT metrics FROM registry.model_versions WHERE version = %s", (new["version"],))[0][0]
    assert metrics["holdout_window"] == [str(day(10)), str(day(15))]
    out = release.promote(wh, longer, ev, run_id="overlap", actor="test", dry_run=True)
    gate = fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = %s", (new["version"],))[0][0]
    assert gate["compared"] == [str(day(12)), str(day(15))] and gate["passed"] == out["gate_passed"]
    # the champion's regression check used the compared days, for both models
    champ_auc = fetch(wh, "SELECT value FROM registry.evaluations WHERE run_id = 'overlap' AND role = 'champion' "
                          "AND metric = 'roc_auc' AND slice_column = ''")[0][0]
    reg = [c for c in gate["checks"] if c["metric"] == "roc_auc" and c["kind"] == "max_regression_abs"][0]
    assert reg["champion"] == pytest.approx(champ_auc)
    assert reg["challenger"] == pytest.approx(ev["challenger_compared"]["roc_auc"])


def test_a_run_for_a_date_reads_only_what_was_known_on_it_and_the_champion_of_that_date(proj, pg_server):
    """Point in time, step by step. The warehouse holds 17 validated days and their labels; a copy of it
    as it was on day 9 (no rows of later days, no label that became known later) trains the same model
    as of day 9 (same data, same hash). The model that scores a date is the champion of that date:
    the newest champion change effective on or before it (``promotion_log.effective_on``), whatever was
    promoted since - and none before the first champion's date."""
    import pandas as pd
    from airtrain.serving import scoring
    from airtrain.serving.target import NoModelError
    from airtrain.warehouse.connection import Warehouse

    spec, d = proj.spec(), day(9)

    def copy(prefix: str) -> Warehouse:
        return Warehouse(pg_server.url(pg_server.create_database(prefix, template=proj.warehouse.uri.rsplit("/", 1)[1])))

    now, then = copy("asof_now"), copy("asof_then")
    for table, col in [("raw.churn_batches", "_partition_date"), ("features.churn", "as_of_date"),
                       ("features.churn_labels", "label_available_on"), ("monitoring.validation_runs", "partition_date"),
                       ("demo_source.churn_labels", "label_available_on")]:
        fetch(then, f"DELETE FROM {table} WHERE {col} > %s", (d,))  # noqa: S608 - fixed names
    assert features.last_labeled_date(now, spec, d) == features.last_labeled_date(then, spec, d) == day(8)
    pd.testing.assert_frame_equal(features.labeled_frame(now, spec, d), features.labeled_frame(then, spec, d))
    a, b = retrain.train(now, spec, d, "asof-now"), retrain.train(then, spec, d, "asof-then")
    assert (a["data_hash"], a["window"], a["train_rows"]) == (b["data_hash"], b["window"], b["train_rows"])
    assert retrain.training_as_of(d) == d  # a drift-triggered run too: its partition is the window's end
    # the champion of a date: v1 (trained as of day 15) is effective from day 15, nothing before
    v1, v2 = champions.champion_version(now, spec), a["version"]
    assert [champions.champion_as_of(now, spec, day(i)) for i in (14, 15, 16)] == [None, v1, v1]
    with pytest.raises(NoModelError, match=rf"had no champion for {day(14)}: the first champion change is "
                                                   rf"effective from {day(15)}"):
        scoring.begin(now, spec, day(14), run_id="too-early")
    # a promotion is effective from its version's training as_of; the newest change (by log id) wins
    champions.promote(now, spec, v2, action="force_promote", actor="test", reason="an older model", run_id="f")
    assert [champions.champion_as_of(now, spec, day(i)) for i in (8, 9, 16)] == [None, v2, v2]
    # a rollback is effective from the date its run re-scores
    champions.promote(now, spec, v1, action="rollback", actor="test", reason="back", run_id="rb", effective_on=day(12))
    assert [champions.champion_as_of(now, spec, day(i)) for i in (9, 11, 12, 16)] == [v2, v2, v1, v1]
    assert [r["effective_on"] for r in champions.promotion_log(now, spec)] == [day(15), d, day(12)]
    t = scoring.begin(now, spec, day(11), run_id="old-date")  # an old date: the champion of that date
    assert t.version == v2
    scoring.abort(now, t)
    with pytest.raises(NoModelError, match="is the champion"):  # no shadow of the date's own champion
        scoring.begin(now, spec, day(11), v2, "shadow", run_id="shadow")
    scoring.abort(now, scoring.begin(now, spec, day(12), v2, "shadow", run_id="shadow"))
    # a change logged before effective_on existed counts from its version's training as_of
    fetch(now, "ALTER TABLE registry.promotion_log DISABLE TRIGGER promotion_log_append_only")
    fetch(now, "UPDATE registry.promotion_log SET effective_on = NULL")
    assert [champions.champion_as_of(now, spec, day(i)) for i in (8, 9, 14, 15)] == [None, v2, v2, v1]
