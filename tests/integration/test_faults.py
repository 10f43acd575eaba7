"""Faults, on a real PostgreSQL and real DAG runs: processes killed mid-write (before and after
their commit) and retried, two runs of one date at once, an out-of-order backfill, a tampered
artifact, a library version mismatch, a PostgreSQL restart during a run. After each, the
warehouse invariants (:mod:`airtrain.invariants`) hold."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from airtrain import invariants
from airtrain.db import Warehouse

from tests.integration.dagtest import ROOT, Project, fetch, land_days, module_project

pytestmark = pytest.mark.integration

START = dt.date(2026, 4, 1)
DAYS = 30
BOOT = 10  # the bootstrap run covers START .. START+BOOT-1
SMALL = {"training": {"min_rows": 500, "window_days": 20, "holdout_days": 2},
         "schedule": {"retry_delay_minutes": 0.01}, "scoring": {"shadow": False}}


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    p, mp = module_project(tmp_path_factory, pg_server, "faults", SMALL)
    land_days(p, START, DAYS)
    dr, states = p.run({"date": str(START), "end_date": str(day(BOOT - 1))})
    assert states["promote"] == "success" and states["publish_predictions"] == "success", states
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


def child(p: Project, conf: dict, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if failpoint:
        env["AIRTRAIN_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, str(ROOT / "tests/integration/dag_child.py"),
                           str(p.spec_dir / "churn.yaml"), json.dumps(conf)],
                          env=env, capture_output=True, text=True, timeout=600)


def assert_invariants(p: Project) -> None:
    problems = invariants.check(p.warehouse, p.spec())
    assert problems == [], problems


# one new date per failpoint; force_promote makes every run reach the promotion
FAILPOINTS = ["ingest.before_commit", "validate.before_commit", "score.before_commit", "publish.before_commit",
              "promote.before_commit", "ingest.after_commit", "validate.after_commit", "score.after_commit",
              "publish.after_commit", "promote.after_commit"]


@pytest.mark.parametrize("i, point", list(enumerate(FAILPOINTS)), ids=FAILPOINTS)
def test_killed_mid_write_then_retried(proj, i, point):
    d = day(BOOT + i)
    conf = {"date": str(d), "force_promote": True, "reason": f"fault test {point}"}
    before = state(proj)
    out = child(proj, conf, point)
    assert out.returncode == 137, (out.returncode, out.stderr[-2000:])
    assert f"AIRTRAIN_FAILPOINT {point}" in out.stderr
    assert_invariants(proj)
    after = state(proj)
    if point.endswith("before_commit"):
        # the killed transaction left no trace: everything it was writing is as before
        table = {"ingest": "raw", "validate": "features", "score": "predictions", "publish": "predictions",
                 "promote": "log"}[point.split(".")[0]]
        assert after[table] == before[table], (table, before[table], after[table])
        if point.split(".")[0] in ("ingest", "validate", "promote"):  # scoring runs after the promotion
            assert after["champion"] == before["champion"] and after["log"] == before["log"]
    # the retry (a new run of the same date) completes and the invariants still hold
    dr, states = proj.run(conf)
    assert str(dr.state) == "success", states
    assert_invariants(proj)
    final = state(proj)
    assert final["champion"] != before["champion"]  # forced promotion of the date's model happened once
    assert len(final["log"]) == len(before["log"]) + 1
    n_pred = fetch(proj.warehouse, "SELECT count(*) FROM predictions.churn WHERE as_of_date = %s AND "
                                   "model_version = %s", (d, final["champion"][0][0]))[0][0]
    assert n_pred == 400


def test_a_retried_shard_that_had_committed_does_not_duplicate(proj):
    from airtrain import scoring

    spec, wh = proj.spec(), proj.warehouse
    t = scoring.begin(wh, spec, day(BOOT - 1))
    first = [scoring.score_shard(wh, spec, t, run_id="r", shard=s, shards=2) for s in (0, 1)]
    again = scoring.score_shard(wh, spec, t, run_id="r-retry", shard=1, shards=2)  # retry after commit
    assert again["rows"] == first[1]["rows"]
    res = scoring.publish(wh, spec, t, first[0]["rows"] + again["rows"])
    assert res["rows"] == 400
    assert_invariants(proj)


def test_two_runs_of_the_same_date_at_once(proj):
    d = day(BOOT + len(FAILPOINTS))
    conf = {"date": str(d)}
    before = state(proj)
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests/integration/dag_child.py"),
                               str(proj.spec_dir / "churn.yaml"), json.dumps(conf)],
                              env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [pr.communicate(timeout=600) for pr in procs]
    assert all(pr.returncode == 0 for pr in procs), [o[1][-2000:] for o in outs]
    assert all("STATE success" in o[0] for o in outs), [o[0][-500:] for o in outs]
    assert_invariants(proj)
    after = state(proj)
    assert len(after["log"]) - len(before["log"]) <= 1  # the same data gives one version, promoted at most once
    versions = fetch(proj.warehouse, "SELECT count(*) FROM registry.model_versions WHERE lineage->>'as_of' = %s",
                     (str(d),))
    assert versions[0][0] == 1
    assert fetch(proj.warehouse, "SELECT count(*) FROM raw.churn_batches WHERE _partition_date = %s", (d,))[0][0] == 400


def test_an_out_of_order_backfill_does_not_demote_the_champion(proj):
    champion = state(proj)["champion"]
    dr, states = proj.run({"date": str(day(BOOT - 2))})  # an older date, re-run later
    assert str(dr.state) == "success", states
    promoted = fetch(proj.warehouse, "SELECT metrics->'gate' FROM registry.model_versions ORDER BY version DESC "
                                     "LIMIT 1")[0][0]
    assert state(proj)["champion"] == champion
    assert states["promote"] == "success" and promoted is not None
    assert_invariants(proj)


def test_an_out_of_order_challenger_is_refused_with_the_reason(proj):
    from airtrain import steps

    spec, wh = proj.spec(), proj.warehouse
    old = steps.train(wh, spec, day(BOOT - 3), "ooo")
    ev = steps.evaluate(wh, spec, old["version"], "ooo", day(BOOT - 3))
    out = steps.promote(wh, spec, ev, run_id="ooo", actor="test")
    assert out["promoted"] is False and "out-of-order backfill" in out["message"]
    assert_invariants(proj)


def test_a_tampered_artifact_is_refused_and_nothing_changes(proj):
    wh = proj.warehouse
    champ = state(proj)["champion"][0][0]
    fetch(wh, "UPDATE registry.model_versions SET artifact = artifact || '\\x00'::bytea WHERE pipeline = 'churn' "
              "AND version = %s", (champ,))
    try:
        assert any("does not match its sha256" in p for p in invariants.check(wh, proj.spec()))
        before = state(proj)
        dr, states = proj.run({"date": str(day(BOOT + len(FAILPOINTS) + 1))})
        assert str(dr.state) == "failed" and "failed" in {states.get("evaluate"), states.get("begin_scoring")}, states
        after = state(proj)
        assert after["champion"] == before["champion"] and after["predictions"] == before["predictions"]
    finally:
        fetch(wh, "UPDATE registry.model_versions SET artifact = substring(artifact FROM 1 FOR "
                  "octet_length(artifact) - 1) WHERE pipeline = 'churn' AND version = %s", (champ,))
    assert_invariants(proj)


def test_a_library_version_mismatch_is_reported_clearly(proj):
    from airtrain import registry
    from airtrain.artifacts import LibraryVersionMismatchError

    wh, spec = proj.warehouse, proj.spec()
    champ = state(proj)["champion"][0][0]
    fetch(wh, "UPDATE registry.model_versions SET lineage = jsonb_set(lineage, '{library_versions,sklearn}', "
              "'\"0.19.2\"') WHERE pipeline = 'churn' AND version = %s", (champ,))
    try:
        with pytest.raises(LibraryVersionMismatchError, match=r"trained with scikit-learn 0\.19\.2 but"):
            registry.load_artifact(wh, spec, champ)
        # and a run that needs the model fails with that message, changing nothing
        before = state(proj)
        dr, states = proj.run({"date": str(day(BOOT + len(FAILPOINTS) + 2))})
        assert str(dr.state) == "failed", states
        assert state(proj)["champion"] == before["champion"]
    finally:
        import sklearn

        fetch(wh, "UPDATE registry.model_versions SET lineage = jsonb_set(lineage, "
                  "'{library_versions,sklearn}', %s::jsonb) WHERE pipeline = 'churn' AND version = %s",
              (json.dumps(sklearn.__version__), champ))
    registry.load_artifact(wh, spec, champ)
    assert_invariants(proj)


def test_postgres_restarting_during_a_run_is_survived_by_retries(tmp_path, monkeypatch, airflow_db):
    """The warehouse server restarts while the run is writing; task retries carry the run through."""
    import secrets

    from airtrain_dev.demo import write_demo_spec
    from airtrain_dev.localpg import LocalPostgres, free_port

    pg = LocalPostgres(tmp_path / "pg", free_port(), secrets.token_hex(8), fast_unsafe=True)
    pg.start()
    try:
        pg.create_database("wh")
        wh = Warehouse(pg.url("wh"))
        p = Project(tmp_path, wh)
        write_demo_spec(ROOT / "include/pipelines/churn.yaml", p.spec_dir,
                        {**SMALL, "schedule": {"retry_delay_minutes": 0.05, "retries": 4}})
        p.activate(monkeypatch)
        land_days(p, START, DAYS)
        restarted = threading.Event()

        def restart() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait until the run is writing the warehouse
                try:
                    if fetch(wh, "SELECT count(*) FROM monitoring.ingest_runs")[0][0] > 0:
                        break
                except Exception:  # noqa: BLE001 - the tables may not exist yet
                    pass
                time.sleep(0.1)
            pg.stop()
            time.sleep(4)  # anything that connects now fails
            pg.start()
            restarted.set()

        threading.Thread(target=restart, daemon=True).start()
        dr, states = p.run({"date": str(START), "end_date": str(day(BOOT - 1))})
        assert restarted.wait(60)
        tries = {ti.task_id: ti.try_number for ti in dr.get_task_instances()}
        assert str(dr.state) == "success", (states, tries)
        assert max(tries.values()) >= 2, tries  # some task was interrupted and retried
        assert invariants.check(wh, p.spec()) == []
    finally:
        pg.stop()
