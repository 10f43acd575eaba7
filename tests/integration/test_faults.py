"""Faults, on a real PostgreSQL and real DAG runs: processes killed mid-write (before their commit,
and the publish right after its commit) and re-run; the other faults (two runs of one date at once,
out-of-order backfills, a tampered artifact, a library version mismatch, a PostgreSQL restart) are in
tests/integration/test_faults_races.py. After each, the warehouse invariants hold.

The killed runs are children forked from this (warm) process (tests/integration/forked.py), so a
kill costs one DAG run, not a fresh interpreter importing Airflow, scikit-learn, GX and Evidently."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain import invariants

from tests.integration import forked
from tests.integration.dagtest import TEST_SPEC, Project, fetch, merged, template_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 4, 1)
DAYS = 30
BOOT = 10  # the bootstrap run covers START .. START+BOOT-1
SMALL = merged(TEST_SPEC, {"scoring": {"shadow": False}})


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def faults_project(tmp_path_factory, pg_server):
    """A copy of the fault tests' template (built once per session): bootstrapped, 30 days landed."""
    return template_project(tmp_path_factory, pg_server, "faults", overrides=SMALL, start=START, days=DAYS,
                            bootstrap={"date": str(START), "end_date": str(day(BOOT - 1))})


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    p, mp = faults_project(tmp_path_factory, pg_server)
    yield p
    mp.undo()


def state(p: Project) -> dict:
    """What a failed attempt must leave untouched."""
    q = {
        "raw": "SELECT _partition_date, count(*), min(_run_id) FROM raw.churn_batches GROUP BY 1 ORDER BY 1",
        "features": "SELECT as_of_date, count(*), min(_run_id) FROM features.churn GROUP BY 1 ORDER BY 1",
        "validation": "SELECT partition_date, run_id FROM monitoring.validation_runs ORDER BY 1",
        "predictions": "SELECT as_of_date, model_version, count(*), min(run_id) FROM predictions.churn "
                       "GROUP BY 1, 2 ORDER BY 1, 2",
        "champion": "SELECT version FROM registry.champions",
        "log": "SELECT id, from_version, to_version FROM registry.promotion_log ORDER BY id",
    }
    return {k: fetch(p.warehouse, v) for k, v in q.items()}


def child(p: Project, conf: dict, failpoint: str | None = None) -> forked.ChildResult:
    """One retrain run in a forked child, killed (``os._exit(137)``) at ``failpoint`` if given."""
    env = {"AIRTRAIN_FAILPOINT": failpoint, "AIRTRAIN_FAILPOINT_MODE": "kill"} if failpoint else {}
    return forked.run(p.spec_dir / "churn.yaml", conf, env=env)


def assert_invariants(p: Project) -> None:
    problems = invariants.check(p.warehouse, p.spec())
    assert problems == [], problems


# one new date per failpoint; force_promote makes every run reach the promotion. Killing the
# scoring steps before their commit re-scores a date whose partition for the champion is already
# published, so "nothing of the interrupted write is visible" compares a partition readers see.
# Killed after a commit, every step is also retried in the same run by tests/integration/test_retries.py
# (Airflow's own retry: same task instance, next try); here the one whose commit removes its input
# (publish: the stage table is renamed into the partition) is killed and re-run as a new run.
FAILPOINTS = ["ingest.before_commit", "validate.before_commit", "score.before_commit", "publish.before_commit",
              "promote.before_commit", "publish.after_commit"]


def published_run(snapshot: dict, d: dt.date) -> str:
    return next(r[3] for r in snapshot["predictions"] if r[0] == d and r[1] == snapshot["champion"][0][0])


@pytest.mark.parametrize("i, point", list(enumerate(FAILPOINTS)), ids=FAILPOINTS)
def test_killed_mid_write_then_retried(proj, i, point):
    step = point.split(".")[0]
    rescore = step in ("score", "publish") and point.endswith("before_commit")
    d = day(BOOT + i)
    conf = {"date": str(d)} if rescore else {"date": str(d), "force_promote": True, "reason": f"fault test {point}"}
    if rescore:  # publish the date first: the killed run re-scores it with the same champion
        dr, states = proj.run(conf)
        assert str(dr.state) == "success", states
    before = state(proj)
    out = child(proj, conf, point)
    assert out.exitcode == 137, (out.exitcode, out.stderr[-2000:])
    assert f"AIRTRAIN_FAILPOINT {point}" in out.stderr
    assert_invariants(proj)
    after = state(proj)
    if point.endswith("before_commit"):
        # the killed transaction left no trace: everything it was writing is as before
        table = {"ingest": "raw", "validate": "features", "score": "predictions", "publish": "predictions",
                 "promote": "log"}[step]
        assert after[table] == before[table], (table, before[table], after[table])
        if rescore:
            # the date's published partition is still the earlier run's, complete
            champ = before["champion"][0][0]
            rows = [r for r in after["predictions"] if r[0] == d and r[1] == champ]
            assert len(rows) == 1 and rows == [r for r in before["predictions"] if r[0] == d and r[1] == champ]
            assert rows[0][2] == 400
        if step == "score":  # the killed shard's rows were rolled back: the stage tables hold nothing
            stages = fetch(proj.warehouse, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                           "c.relnamespace WHERE n.nspname = 'predictions' AND c.relkind IN ('r', 'p') "
                                           "AND c.relname LIKE %s", ("%stage%",))
            assert stages, "the killed run had created its stage table"
            for (stage,) in stages:
                assert fetch(proj.warehouse, f'SELECT count(*) FROM predictions."{stage}"') == [(0,)], stage
        if step in ("ingest", "validate", "promote"):  # scoring runs after the promotion
            assert after["champion"] == before["champion"] and after["log"] == before["log"]
    # the retry (a new run of the same date) completes and the invariants still hold
    dr, states = proj.run(conf)
    assert str(dr.state) == "success", states
    assert_invariants(proj)
    final = state(proj)
    if rescore:
        assert final["champion"] == before["champion"] and final["log"] == before["log"]
        rows = [r for r in final["predictions"] if r[0] == d and r[1] == final["champion"][0][0]]
        assert len(rows) == 1 and rows[0][2] == 400 and rows[0][3] != published_run(before, d)
    else:
        assert final["champion"] != before["champion"]  # forced promotion of the date's model happened once
        assert len(final["log"]) == len(before["log"]) + 1
        n_pred = fetch(proj.warehouse, "SELECT count(*) FROM predictions.churn WHERE as_of_date = %s AND "
                                       "model_version = %s", (d, final["champion"][0][0]))[0][0]
        assert n_pred == 400
