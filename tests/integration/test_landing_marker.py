"""The landing completeness convention (``source.ready_marker``) against a real warehouse and real
``dag.test()`` runs: a landing file that arrives in two halves is never ingested as the day.

The half is cut at a line end, so it is a well-formed CSV with fewer rows - exactly what a reader
that only checks that the file exists (or parses) would take for the whole day."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading

import pytest
from airtrain import simulate

from tests.integration.dagtest import fetch, module_project

pytestmark = pytest.mark.integration

SPEC = {"source": {"kind": "files", "path": "data/landing/churn", "format": "csv", "pattern": "{date}.csv",
                   "ready_marker": "{date}.csv.ready", "wait_minutes": 10080},
        "schedule": {"retries": 3, "retry_delay_minutes": 0.01}}
OLD = dt.date(2026, 2, 3)
ROWS = 300


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    from airtrain.steps.schema import apply_schema

    p, mp = module_project(tmp_path_factory, pg_server, "marker", SPEC)
    apply_schema(p.warehouse, p.spec())
    yield p
    mp.undo()


def halves(p, d: dt.date) -> tuple[bytes, bytes]:
    """(first half, whole file) of day ``d``'s landing file; the labels are loaded (known in 30 days)."""
    feats, labels = simulate.simulate_day(d, rows=ROWS)
    simulate.load_labels(p.warehouse, labels)
    whole = feats.to_csv(index=False).encode()
    cut = whole.index(b"\n", len(whole) // 2) + 1
    return whole[:cut], whole


def write(p, name: str, body: bytes) -> None:
    p.landing.mkdir(parents=True, exist_ok=True)
    (p.landing / name).write_bytes(body)


def tries(dr) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dr.get_task_instances()}


def raw_rows(p, d: dt.date) -> int:
    return fetch(p.warehouse, "SELECT count(*) FROM raw.churn_batches WHERE _partition_date = %s", (d,))[0][0]


def test_a_half_file_is_refused_without_its_marker_or_against_it_and_taken_whole_with_it(proj):
    from airtrain.data.ingest import LandingIncompleteError, ingest_partition
    from airtrain.errors import PermanentError

    d = OLD
    half, whole = halves(proj, d)
    spec = proj.spec()
    write(proj, f"{d}.csv", half)
    with pytest.raises(LandingIncompleteError, match="no ready marker") as err:
        ingest_partition(proj.warehouse, spec, d, "t1", project_root=proj.root)
    assert not isinstance(err.value, PermanentError)  # retried: the writer is still at work
    # a marker written early (before the data) carrying the whole file's sha256 and size
    write(proj, f"{d}.csv.ready", json.dumps({"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}).encode())
    with pytest.raises(LandingIncompleteError, match="does not match its ready marker"):
        ingest_partition(proj.warehouse, spec, d, "t2", project_root=proj.root)
    assert raw_rows(proj, d) == 0
    assert fetch(proj.warehouse, "SELECT count(*) FROM monitoring.ingest_runs WHERE partition_date = %s", (d,)) == [(0,)]
    write(proj, f"{d}.csv", whole)
    res = ingest_partition(proj.warehouse, spec, d, "t3", project_root=proj.root)
    assert res.rows == ROWS and raw_rows(proj, d) == ROWS
    assert res.source_sha256 == hashlib.sha256(whole).hexdigest()


def test_the_sensor_waits_for_the_marker_then_the_run_ingests_the_whole_day(proj):
    d = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # within its deadline (wait_minutes: a week)
    half, whole = halves(proj, d)
    write(proj, f"{d}.csv", half)

    def finish() -> None:  # the writer finishes, then writes the marker
        write(proj, f"{d}.csv", whole)
        write(proj, f"{d}.csv.ready", b"")

    done = threading.Timer(4.0, finish)
    done.start()
    try:
        dr, _ = proj.run({"date": str(d)})
    finally:
        done.cancel()
    t = tries(dr)
    assert t["wait_for_landing"] == ("success", 1) and t["ingest"] == ("success", 1), t
    assert raw_rows(proj, d) == ROWS
    assert fetch(proj.warehouse, "SELECT rows FROM monitoring.ingest_runs WHERE partition_date = %s", (d,)) == [(ROWS,)]


def test_a_late_delivery_in_progress_is_waited_for_then_fails_if_it_never_completes(proj):
    """Past its deadline, a file that is there but incomplete is being (re-)delivered: the sensor waits for
    it - ``source.wait_minutes`` from when it first saw it - instead of failing it as "can no longer arrive";
    one that never completes fails on try 1, saying it is incomplete. (A complete one: the soak.)"""
    d = OLD + dt.timedelta(days=1)
    half, _ = halves(proj, d)
    write(proj, f"{d}.csv", half)
    proj.write_spec(source={**SPEC["source"], "wait_minutes": 0.1}, schedule=SPEC["schedule"])
    try:
        t0 = dt.datetime.now(dt.UTC)
        dr, _ = proj.run({"date": str(d)})
        waited = (dt.datetime.now(dt.UTC) - t0).total_seconds()
    finally:
        proj.write_spec(**SPEC)
    t = tries(dr)
    assert t["wait_for_landing"] == ("failed", 1) and t["ingest"][0] == "upstream_failed", t
    assert waited >= 6, waited  # it waited (0.1 min) before failing
    assert raw_rows(proj, d) == 0
