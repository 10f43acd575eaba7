"""Faults, part two (a module of its own, so the test workers can run it beside the kill tests of
tests/integration/test_faults.py, on its own copy of the same template): a retried shard, two runs
of one date at once, an out-of-order backfill and challenger, a tampered artifact, a library version
mismatch, a PostgreSQL restart during a run. After each, the warehouse invariants hold."""

from __future__ import annotations

import json
import threading
import time

import pytest
from airtrain import invariants
from airtrain.warehouse.connection import Warehouse

from tests.integration import forked
from tests.integration.dagtest import Project, fetch, land_days
from tests.integration.test_faults import (
    BOOT,
    FAILPOINTS,
    SMALL,
    START,
    assert_invariants,
    day,
    faults_project,
    state,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    p, mp = faults_project(tmp_path_factory, pg_server)  # its own copy of the kill tests' template
    yield p
    mp.undo()


def test_a_retried_shard_that_had_committed_does_not_duplicate(proj):
    from airtrain.serving import publish, scoring

    spec, wh = proj.spec(), proj.warehouse
    t = scoring.begin(wh, spec, day(BOOT - 1))
    first = [scoring.score_shard(wh, spec, t, run_id="r", shard=s, shards=2) for s in (0, 1)]
    again = scoring.score_shard(wh, spec, t, run_id="r-retry", shard=1, shards=2)  # retry after commit
    assert again["rows"] == first[1]["rows"]
    res = publish.publish(wh, spec, t, first[0]["rows"] + again["rows"])
    assert res["rows"] == 400
    assert_invariants(proj)


@pytest.mark.e2e  # ~55 s: in make test-e2e; make test keeps two runs of one date in test_concurrency's four
def test_two_runs_of_the_same_date_at_once(proj):
    d = day(BOOT + len(FAILPOINTS))
    # forced, so each run wants to promote: exactly one promotion must happen, never two
    conf = {"date": str(d), "force_promote": True, "reason": "two runs of one date at once"}
    before = state(proj)
    children = [forked.start(proj.spec_dir / "churn.yaml", conf) for _ in range(2)]
    outs = [forked.wait(proc, path) for proc, path in children]
    assert all(o.exitcode == 0 and o.state == "success" for o in outs), [o.stderr[-2000:] for o in outs]
    assert_invariants(proj)
    after = state(proj)
    assert len(after["log"]) == len(before["log"]) + 1  # the same data gives one version, promoted once
    assert after["champion"] != before["champion"]
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
    from airtrain.steps import release, retrain

    spec, wh = proj.spec(), proj.warehouse
    old = retrain.train(wh, spec, day(BOOT - 3), "ooo")
    ev = retrain.evaluate(wh, spec, old["version"], "ooo", day(BOOT - 3))
    out = release.promote(wh, spec, ev, run_id="ooo", actor="test")
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
        loaders = [states.get("evaluate"), states.get("begin_scoring"), *(states.get("score") or [])]
        assert str(dr.state) == "failed" and "failed" in loaders, states  # the first task loading the champion
        after = state(proj)
        assert after["champion"] == before["champion"] and after["predictions"] == before["predictions"]
    finally:
        fetch(wh, "UPDATE registry.model_versions SET artifact = substring(artifact FROM 1 FOR "
                  "octet_length(artifact) - 1) WHERE pipeline = 'churn' AND version = %s", (champ,))
    assert_invariants(proj)


def test_a_library_version_mismatch_is_reported_clearly(proj):
    from airtrain.model.artifacts import LibraryVersionMismatchError
    from airtrain.registry import versions

    wh, spec = proj.warehouse, proj.spec()
    champ = state(proj)["champion"][0][0]
    fetch(wh, "UPDATE registry.model_versions SET lineage = jsonb_set(lineage, '{library_versions,sklearn}', "
              "'\"0.19.2\"') WHERE pipeline = 'churn' AND version = %s", (champ,))
    try:
        with pytest.raises(LibraryVersionMismatchError, match=r"trained with scikit-learn 0\.19\.2 but"):
            versions.load_artifact(wh, spec, champ)
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
    versions.load_artifact(wh, spec, champ)
    assert_invariants(proj)


def test_postgres_restarting_during_a_run_is_survived_by_retries(tmp_path, monkeypatch, airflow_db):
    """The warehouse server restarts while the run is writing; task retries carry the run through."""
    import secrets

    from airtrain_dev.localpg import LocalPostgres, free_port

    pg = LocalPostgres(tmp_path / "pg", free_port(), secrets.token_hex(8), fast_unsafe=True)
    pg.start()
    try:
        pg.create_database("wh")
        wh = Warehouse(pg.url("wh"))
        p = Project(tmp_path, wh)
        p.respec(SMALL, {"schedule": {"retry_delay_minutes": 0.05, "retries": 4}})
        p.activate(monkeypatch)
        land_days(p, START, BOOT)
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
