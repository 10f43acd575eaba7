"""Concurrency: runs of the same and of neighbouring dates at once, in real processes (children
forked from this warm process, each a real ``dag.test()`` run against the same warehouse and the
same Airflow metadata DB); promotion and rollback as a compare-and-swap against the champion the
decision was made against; stage tables of dead runs cleaned up, never those of live ones."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from airtrain import invariants
from airtrain.registry import champions, versions
from airtrain.serving import publish, scoring
from airtrain.serving.target import target_for
from airtrain.steps import release, retrain

from tests.integration import forked
from tests.integration.dagtest import fetch, template_project
from tests.integration.test_faults import BOOT, DAYS, SMALL, START, day

pytestmark = pytest.mark.integration


@pytest.fixture
def proj(tmp_path_factory, pg_server, airflow_db, monkeypatch):
    """A fresh copy of test_faults.py's session template (v1 the champion, as of day 9)."""
    p, _ = template_project(tmp_path_factory, pg_server, "faults", overrides=SMALL, start=START, days=DAYS,
                            bootstrap={"date": str(START), "end_date": str(day(BOOT - 1))}, monkeypatch=monkeypatch)
    return p


def assert_invariants(p) -> None:
    problems = invariants.check(p.warehouse, p.spec())
    assert problems == [], problems


def champion(p) -> int:
    return fetch(p.warehouse, "SELECT version FROM registry.champions")[0][0]


def stages(p) -> list[str]:
    return [r[0] for r in fetch(p.warehouse, "SELECT tablename FROM pg_tables WHERE schemaname = 'predictions' "
                                             "AND tablename LIKE '%%\\_stage\\_%%' ORDER BY 1")]


def test_four_runs_of_the_same_and_neighbouring_dates_at_once(proj):
    """N = 4 processes: two runs of one date, two of the next dates, all wanting to promote."""
    confs = [{"date": str(day(BOOT))}, {"date": str(day(BOOT))}, {"date": str(day(BOOT + 1))},
             {"date": str(day(BOOT + 2))}]
    log_before = fetch(proj.warehouse, "SELECT count(*) FROM registry.promotion_log")[0][0]
    t0 = time.monotonic()
    children = [forked.start(proj.spec_dir / "churn.yaml", c) for c in confs]
    outs = [forked.wait(proc, path) for proc, path in children]
    seconds = time.monotonic() - t0
    assert all(o.exitcode == 0 and o.state == "success" for o in outs), [(o.tasks, o.stderr[-3000:]) for o in outs]
    assert_invariants(proj)
    assert stages(proj) == []  # every run published (or dropped) its own stage
    # one version per training data: the two runs of one date (and a neighbour that trained on the
    # same labeled days) registered one model, never two
    versions = fetch(proj.warehouse, "SELECT version, lineage->>'as_of', lineage->>'data_hash' FROM "
                                     "registry.model_versions WHERE version > 1 ORDER BY version")
    assert 1 <= len(versions) <= 3 and len({h for _, _, h in versions}) == len(versions), versions
    # exactly one promotion per real change: the log is a chain (invariant 5), no version is promoted
    # twice, and the champion never went back to a model trained as of an earlier date
    log = [r[0] for r in fetch(proj.warehouse, "SELECT to_version FROM registry.promotion_log ORDER BY id")][
        log_before:]
    assert 1 <= len(log) <= len(versions) and len(set(log)) == len(log), (log, versions)
    as_of = {v: a for v, a, _ in versions}
    promoted = [as_of[v] for v in log]
    assert promoted == sorted(promoted), promoted
    assert champion(proj) == log[-1]
    # every challenger that was not promoted says why, in the registry
    for v, _, _ in versions:
        gate = fetch(proj.warehouse, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = %s",
                     (v,))[0][0]
        assert v in log or (gate and not gate["passed"] and gate["reason"]), (v, gate)
    # each date's predictions were published once, complete, by one of its runs
    for i in range(3):
        rows = fetch(proj.warehouse, "SELECT model_version, count(*) FROM predictions.churn WHERE as_of_date = %s "
                                     "GROUP BY 1", (day(BOOT + i),))
        assert rows and all(n == 400 for _, n in rows), rows
    print(f"4 concurrent runs: {seconds:.0f} s, promotions {log}")  # noqa: T201 - the figure for RELIABILITY.md


def test_a_promotion_decided_against_a_champion_that_changed_meanwhile_is_refused(proj):
    spec, wh = proj.spec(), proj.warehouse
    # a challenger evaluated against v1 ...
    new = retrain.train(wh, spec, day(BOOT - 2), "cas-a")
    ev = retrain.evaluate(wh, spec, new["version"], "cas-a", day(BOOT - 2))
    assert ev["expected_champion"] == 1
    # ... while another run changes the champion (an older model, forced: not an out-of-order case)
    other = retrain.train(wh, spec, day(BOOT - 4), "cas-b")["version"]
    champions.promote(wh, spec, other, action="force_promote", actor="test", reason="meanwhile", run_id="cas-b")
    log = fetch(wh, "SELECT id FROM registry.promotion_log")
    out = release.promote(wh, spec, ev, run_id="cas-a", actor="test", force=True, reason="forced, but stale")
    assert out["promoted"] is False and out["refused"] == "champion_changed", out
    assert f"decided against v1, but the champion is v{other} now" in out["message"]
    gate = fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = %s", (new["version"],))[0][0]
    assert gate["refused"] == "champion_changed" and f"the champion is v{other} now" in gate["reason"]
    assert champion(proj) == other and fetch(wh, "SELECT id FROM registry.promotion_log") == log
    # re-evaluated against the champion of now, it goes through
    ev = retrain.evaluate(wh, spec, new["version"], "cas-a2", day(BOOT - 2))
    assert release.promote(wh, spec, ev, run_id="cas-a2", actor="test", force=True, reason="re-decided")["promoted"]
    assert champion(proj) == new["version"]
    # a rollback planned against another champion is refused the same way, then done when current
    with pytest.raises(versions.RegistryError, match=rf"rollback to v1 refused: champion changed: .* decided "
                                                     rf"against v{other}, but the champion is v{new['version']}"):
        release.rollback(wh, spec, 1, run_id="rb", actor="test", reason="stale plan", expected_champion=other)
    refusal = fetch(wh, "SELECT metrics->'rollback' FROM registry.model_versions WHERE version = 1")[0][0]
    assert refusal["run_id"] == "rb" and "champion changed" in refusal["refused"]
    assert champion(proj) == new["version"]
    assert release.rollback(wh, spec, 1, run_id="rb2", actor="test", reason="current plan",
                          expected_champion=new["version"])["changed"]
    assert champion(proj) == 1
    assert_invariants(proj)


def test_orphan_stage_tables_are_dropped_never_a_live_runs(proj):
    spec, wh = proj.spec(), proj.warehouse
    d = day(BOOT - 1)
    made = {run: scoring.begin(wh, spec, d, run_id=run).stage for run in ("mine", "live", "dead", "old-live")}
    # "old-live" is still running but its stage is older than any scoring takes: an orphan too
    created = (dt.datetime.now(dt.UTC) - publish.STAGE_MAX_AGE - dt.timedelta(hours=1)).isoformat()
    fetch(wh, f'COMMENT ON TABLE predictions."{made["old-live"]}" IS %s',  # noqa: S608 - a name made above
          (json.dumps({"airtrain_stage": True, "run_id": "old-live", "created_at": created}),))
    fetch(wh, "CREATE TABLE predictions.churn_stage_legacy (LIKE predictions.churn)")  # no comment: pre-upgrade
    dropped = publish.drop_orphan_stages(wh, spec, keep_run="mine", is_live=lambda run: run in {"live", "old-live"})
    assert sorted(dropped) == sorted(f"predictions.{made[r]}" for r in ("dead", "old-live")) + [
        "predictions.churn_stage_legacy"], dropped
    assert stages(proj) == sorted([made["mine"], made["live"]])
    for run in ("mine", "live"):  # both still usable
        t = target_for(spec, d, champion(proj), run_id=run)
        rows = scoring.score_shard(wh, spec, t, run_id=run)["rows"]
        assert publish.publish(wh, spec, t, rows, run_id=run)["rows"] == 400
    assert stages(proj) == []
    assert_invariants(proj)


def _publish_when_both_are_ready(spec, wh, target, rows, run_id, barrier, results) -> None:
    """A forked child: publish one scored stage the moment the other child is ready too."""
    try:
        barrier.wait(30)
        res = publish.publish(wh, spec, target, rows, run_id=run_id)
        results.put((run_id, "ok", res["rows"]))
    except Exception as exc:  # noqa: BLE001 - the test shows what happened
        results.put((run_id, type(exc).__name__, str(exc)[:500]))


def test_two_publishes_of_different_dates_at_once_never_deadlock(proj):
    """Two runs of one pipeline (a backfill with max_active_runs: 2) publish different dates at the
    same moment, in real processes: both swaps go through on the first call. Before every publish
    took its locks in one order, one of the two was picked as a deadlock victim nearly every time
    (PostgreSQL's DeadlockDetected: each waited for the other's stage table), failed, and lost its
    retry delay."""
    import multiprocessing

    spec, wh = proj.spec(), proj.warehouse
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for rnd in range(3):  # three rounds of two new dates each (before the fix ~5 rounds in 6 deadlocked)
        staged = []
        for d in (day(2 * rnd), day(2 * rnd + 1)):
            run = f"backfill-{d}"
            t = scoring.begin(wh, spec, d, 1, run_id=run)  # v1 (explicitly: these days are older than it)
            staged.append((t, scoring.score_shard(wh, spec, t, run_id=run)["rows"], run))
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_publish_when_both_are_ready, args=(spec, wh, t, n, run, barrier, results))
                 for t, n, run in staged]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        outcomes += [results.get(timeout=5) for _ in procs]
    assert [o[1:] for o in outcomes] == [("ok", 400)] * 6, outcomes
    for i in range(6):
        assert fetch(proj.warehouse, "SELECT model_version, count(*), min(run_id) FROM predictions.churn "
                                     "WHERE as_of_date = %s GROUP BY 1", (day(i),)) == [(1, 400, f"backfill-{day(i)}")]
    assert stages(proj) == []
    assert_invariants(proj)
