"""Permanent errors fail at once; a landing file that may still arrive is waited for, deferred.

Real dag.test() runs (deferred tasks run their trigger in-process), real PostgreSQL. None of these
runs trains a model: each stops at the task that must fail (or wait) on the first try.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg2
import pytest
from airtrain import simulate

from tests.integration.dagtest import fetch, module_project

pytestmark = pytest.mark.integration

OLD = dt.date(2026, 2, 3)
SPEC = {"schedule": {"retries": 3, "retry_delay_minutes": 0.01}}  # a retried task shows try_number 4


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server, airflow_db):
    p, mp = module_project(tmp_path_factory, pg_server, "failfast", SPEC)
    yield p
    mp.undo()


def tries(dr) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dr.get_task_instances()}


def land(p, d: dt.date, rows: int = 200) -> None:
    feats, labels = simulate.simulate_day(d, rows=rows)
    simulate.write_landing_file(feats, p.landing, d)
    simulate.load_labels(p.warehouse, labels)  # known in 30 days: training skips, nothing is retried


def set_wait(p, minutes: float) -> None:
    p.write_spec(**{**SPEC, "source": {**p.spec().source.model_dump(by_alias=True), "wait_minutes": minutes}})


def wait_until_now_plus(d: dt.date, seconds: float) -> float:
    """source.wait_minutes that puts the deadline of day ``d``'s file ``seconds`` from now."""
    day_end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), dt.UTC)
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds) - day_end).total_seconds() / 60


def test_a_landing_file_that_can_no_longer_arrive_fails_at_once(proj):
    set_wait(proj, 360)
    dr, _ = proj.run({"date": str(OLD)})  # months ago: its file cannot arrive any more
    t = tries(dr)
    assert str(dr.state) == "failed"
    failed = {k: v for k, v in t.items() if v[0] == "failed"}
    assert failed == {"wait_for_landing": ("failed", 1)}, t  # one try, no retries
    assert t["ingest"][0] == "upstream_failed"


def test_a_landing_file_that_arrives_while_waiting_is_picked_up(proj):
    d = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    set_wait(proj, wait_until_now_plus(d, 300))  # may arrive for another 5 minutes
    arrive = threading.Timer(3.0, land, args=(proj, d))
    arrive.start()
    t0 = time.monotonic()
    try:
        dr, _ = proj.run({"date": str(d)})
    finally:
        arrive.cancel()
    t = tries(dr)
    assert t["wait_for_landing"] == ("success", 1), t
    assert t["ingest"] == ("success", 1) and t["validate"][0] == "success", t
    assert time.monotonic() - t0 < 240, "it waited for the deadline instead of the file"
    assert fetch(proj.warehouse, "SELECT rows FROM monitoring.ingest_runs WHERE partition_date = %s", (d,)) == [(200,)]


def test_a_landing_file_that_misses_its_deadline_fails_then_without_retries(proj):
    d = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    set_wait(proj, wait_until_now_plus(d, 4))
    dr, _ = proj.run({"date": str(d)})
    t = tries(dr)
    assert str(dr.state) == "failed" and t["wait_for_landing"] == ("failed", 1), t


def test_a_blocked_batch_fails_without_retries(proj):
    d = OLD + dt.timedelta(days=1)
    proj.landing.mkdir(parents=True, exist_ok=True)
    (proj.landing / f"{d}.csv").write_text("customer_id,as_of_date\n")  # no rows, columns missing: blocked
    dr, _ = proj.run({"date": str(d)})
    t = tries(dr)
    assert t["ingest"] == ("success", 1), t
    assert t["validate"] == ("failed", 1), t  # blocked: retrying the same bytes cannot help
    assert fetch(proj.warehouse, "SELECT blocked FROM monitoring.validation_runs WHERE partition_date = %s",
                 (d,)) == [(True,)]


def test_only_permanent_errors_skip_the_retries():
    from airflow.sdk.exceptions import AirflowFailException
    from airtrain.data.ingest import SourceFormatError
    from airtrain.dates import PartitionUndefinedError
    from airtrain.registry.versions import RegistryError
    from airtrain_airflow.runtime import fail_fast

    for permanent in (SourceFormatError("bad file"), PartitionUndefinedError("no date"), RegistryError("no v9")):
        with pytest.raises(AirflowFailException, match=type(permanent).__name__), fail_fast():
            raise permanent
    for transient in (psycopg2.OperationalError("server closed the connection unexpectedly"),
                      psycopg2.errors.LockNotAvailable("lock timeout"), ConnectionResetError()):
        with pytest.raises(type(transient)), fail_fast():
            raise transient
