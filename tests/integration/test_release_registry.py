"""Rollbacks that stick, promotion holds, per-run gate decisions, who promoted and what the card says
(issue 20 items 5, 6, 8, 9), through the pipeline's own steps on a copy of the booted test warehouse
(v1 champion after a real bootstrap run; tests/integration/dagtest.py) with real scikit-learn."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from airtrain.registry import cards, champions, status
from airtrain.steps import release, retrain

from tests.integration.dagtest import TEST_SPEC, fetch, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
LAST = START + dt.timedelta(days=11)  # the bootstrap range's end (v1 is trained as of it)
#: a different model on the same days (v2, v3), with a gate that lets any comparison pass: what is
#: tested here is what the registry does with a passing challenger, not the metrics
PERMISSIVE = {"promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.5, "max_regression_abs": 1.0}]},
              # a window longer than the data: the nominal window starts 9 days before the first day with rows
              "training": {"window_days": 20}}
V2 = {"training": {"params": {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 15}}}
V3 = {"training": {"params": {"max_iter": 40, "learning_rate": 0.1, "max_leaf_nodes": 7}}}


@pytest.fixture
def booted(tmp_path_factory, pg_server, monkeypatch, airflow_db):
    """The same session template as test_retrain_dag's ``project``: 14 landed days, v1 champion."""
    p, _ = template_project(tmp_path_factory, pg_server, "rt_booted", overrides=TEST_SPEC, start=START, days=14,
                            rows=400, bootstrap={"date": str(START), "end_date": str(LAST)}, monkeypatch=monkeypatch)
    return p


def _cycle(p, layer: dict, run_id: str, actor: str = "user:alice", **kw) -> dict:
    """train → evaluate → promote of one run, as the retrain DAG's tasks do it."""
    p.respec(TEST_SPEC, PERMISSIVE, layer)
    spec, wh = p.spec(), p.warehouse
    trained = retrain.train(wh, spec, LAST, run_id)
    ev = retrain.evaluate(wh, spec, trained["version"], run_id, LAST)
    return release.promote(wh, spec, ev, run_id=run_id, actor=actor, **kw)


def _decisions(p, version: int) -> list[tuple]:
    return fetch(p.warehouse, "SELECT run_id, passed, refused, outcome FROM registry.gate_decisions "
                              "WHERE pipeline = 'churn' AND version = %s ORDER BY created_at", (version,))


def test_a_rollback_sticks_and_every_run_keeps_its_own_gate_decision(booted):
    p = booted
    wh = p.warehouse
    # run_a: a passing challenger is promoted by the gate; the person who started the run is beside it
    out = _cycle(p, V2, "run_a")
    assert out["promoted"] and out["version"] == 2, out
    log = fetch(wh, "SELECT to_version, action, actor, triggered_by FROM registry.promotion_log ORDER BY id")
    assert log[-1] == (2, "promote", "airtrain:gate", "user:alice")
    promoted_gate = fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = 2")[0][0]
    assert promoted_gate["passed"] is True and promoted_gate["compared"] and promoted_gate["run_id"] == "run_a"

    # item 9: the card shows the days that had rows, not the nominal 20-day window
    card = cards.read(wh, p.spec(), 2)
    first, last_train = START, LAST - dt.timedelta(days=3)
    assert card["data"]["train"] == [str(first), str(last_train)]
    assert card["data"]["train_days"] == {"first": str(first), "last": str(last_train), "days": 9, "rows": 9 * 400}
    assert card["data"]["train_window"] == [str(first - dt.timedelta(days=9)), str(last_train)]
    page = cards.render_html(card)
    assert f"{first} … {last_train} (9 days with rows); window {first - dt.timedelta(days=9)}" in page

    # item 6: a later run re-derives v2 (same data, params, code) while it is the champion: its own
    # decision row, and metrics.gate still holds the decision that promoted it (no "first model")
    again = _cycle(p, V2, "run_a2")
    assert again["version"] == 2 and again["already_champion"] and not again["promoted"]
    assert fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = 2")[0][0] == promoted_gate
    assert _decisions(p, 2) == [("run_a", True, None, "promoted (promote)"),
                                ("run_a2", None, None, "already the champion")]

    # item 5: roll back v2 -> v1; v2 is rejected (who, when, why), in the same transaction
    release.rollback(wh, p.spec(), 1, run_id="rb", actor="user:bob", reason="v2 misbehaves in production")
    assert champions.champion_version(wh, p.spec()) == 1
    (status, actor, reason), = fetch(wh, "SELECT status, actor, reason FROM registry.version_status WHERE version = 2")
    assert (status, actor) == ("rejected", "user:bob") and "v2 misbehaves in production" in reason
    with pytest.raises(psycopg2.Error, match="append-only"):
        fetch(wh, "UPDATE registry.version_status SET status = 'cleared'")

    # the next run retrains the same data into the same v2: the gate refuses it, with that reason stored
    refused = _cycle(p, V2, "run_b")
    assert refused["version"] == 2 and not refused["promoted"] and refused["gate_passed"] is False
    assert champions.champion_version(wh, p.spec()) == 1
    gate = fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = 2")[0][0]
    assert gate["refused"] == "rejected" and gate["run_id"] == "run_b" and gate["metrics_passed"] is True
    assert "rejected by user:bob" in gate["reason"] and "v2 misbehaves in production" in gate["reason"]
    assert "force_promote" in gate["reason"]
    assert _decisions(p, 2)[-1] == ("run_b", False, "rejected", "not promoted")

    # the card shows every decision of v2, its rejection, and that it is no longer the champion
    card = cards.read(wh, p.spec(), 2)
    assert [g["run_id"] for g in card["gate_decisions"]] == ["run_a", "run_a2", "run_b"]
    assert [(r["run_id"], r["champion_version"]) for r in card["metrics"]["runs"]["rows"]] == [
        ("run_a", 1), ("run_a2", None), ("run_b", 1)]  # every evaluation: v1 on the same rows, none when champion
    assert card["status"]["rejected"] is True and card["is_champion"] is False
    assert cards.read(wh, p.spec(), 1)["is_champion"] is True
    assert "(rejected)" in cards.render_html(card) and "Gate decisions (every run)" in cards.render_html(card)

    # only force_promote with a reason brings it back; that clears the rejection (logged)
    forced = _cycle(p, V2, "run_c", actor="user:bob", force=True, reason="root cause fixed upstream")
    assert forced["promoted"] and forced["action"] == "force_promote"
    assert fetch(wh, "SELECT status, actor FROM registry.version_status WHERE version = 2 ORDER BY id") == [
        ("rejected", "user:bob"), ("cleared", "user:bob")]
    assert fetch(wh, "SELECT actor, triggered_by FROM registry.promotion_log ORDER BY id DESC LIMIT 1") == [
        ("user:bob", "user:bob")]
    assert cards.read(wh, p.spec(), 2)["status"]["rejected"] is False


def test_a_hold_stops_automatic_promotions_until_released(booted):
    from airtrain_airflow.ui import _holds, render_index

    p = booted
    wh = p.warehouse
    p.respec(TEST_SPEC, PERMISSIVE)
    held = status.set_promotion_hold(wh, p.spec(), "hold", actor="user:carol", reason="incident 7: freeze models",
                                       run_id="hold_1")
    assert held["changed"] and held["held"]
    # a retry of the same run finds its own row; asking again changes nothing
    assert status.set_promotion_hold(wh, p.spec(), "hold", actor="user:carol", reason="x" * 5, run_id="hold_1")[
        "changed"]
    assert not status.set_promotion_hold(wh, p.spec(), "hold", actor="user:dan", reason="again", run_id="hold_2")[
        "changed"]
    assert fetch(wh, "SELECT count(*) FROM registry.promotion_holds")[0][0] == 1

    # a person can still force a promotion while held; the hold stays
    forced = _cycle(p, V2, "run_f", actor="user:carol", force=True, reason="the fix for incident 7")
    assert forced["promoted"] and forced["action"] == "force_promote"
    assert status.promotion_hold(wh, p.spec()) is not None

    # a challenger that passes the gate is recorded as held, not promoted
    p.respec(TEST_SPEC, PERMISSIVE, V3)
    spec = p.spec()
    trained = retrain.train(wh, spec, LAST, "run_h")
    ev = retrain.evaluate(wh, spec, trained["version"], "run_h", LAST)
    out = release.promote(wh, spec, ev, run_id="run_h", actor="airflow:scheduled")
    assert out["held"] and not out["promoted"] and out["gate_passed"] is True
    assert champions.champion_version(wh, spec) == forced["version"]
    (outcome,), = fetch(wh, "SELECT outcome FROM registry.gate_decisions WHERE run_id = 'run_h'")
    assert outcome.startswith("held: automatic promotions of churn are held since") and "incident 7" in outcome
    page = render_index({"churn": spec}, lambda s: ([], None), holds_for=_holds)
    assert "automatic promotions are HELD" in page and "incident 7: freeze models" in page

    # released: the gate promotes again (the same evaluation, in the next run; logged as the gate's)
    status.set_promotion_hold(wh, spec, "release", actor="user:carol", reason="incident 7 closed",
                                run_id="release_1")
    out = release.promote(wh, spec, ev, run_id="run_r", actor="airflow:scheduled")
    assert out["promoted"] and out["version"] == trained["version"] != forced["version"]
    assert fetch(wh, "SELECT actor, triggered_by FROM registry.promotion_log ORDER BY id DESC LIMIT 1") == [
        ("airtrain:gate", "airflow:scheduled")]
    assert "automatic promotions are active" in render_index({"churn": spec}, lambda s: ([], None), holds_for=_holds)
