"""Schema changes belong to deploy time; the daily run neither needs CREATEROLE nor blocks readers.

* ``prepare`` only verifies the schema fingerprint ``airtrain migrate`` recorded, and fails with
  the command to run when the warehouse is behind the spec;
* the task's login without CREATEROLE (not a superuser) runs the daily steps after an owner login
  migrated, while an analyst holds a long read transaction on the predictions view and table;
* the partition swap waits at most ``lock_timeout`` per attempt behind a long reader, retries with
  backoff, never makes other readers queue behind it, and publishes once the reader is done.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
import pytest
import yaml
from airtrain import migrate
from airtrain.serving import publish as publishing
from airtrain.serving import scoring
from airtrain.serving.target import ScoringTarget, target_for
from airtrain.spec import load_spec, parse_spec
from airtrain.steps import release, retrain, schema
from airtrain.steps.schema import apply_schema, verify_schema
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.ddl import SchemaBehindError
from psycopg2 import sql

from tests.integration.dagtest import TEST_SPEC, Project, fetch, hand_staged, land_days, merged

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _spec_dir(tmp_path: Path, **overrides) -> Path:
    from airtrain_dev.demo import write_demo_spec

    d = tmp_path / "pipelines"
    write_demo_spec(ROOT / "include/pipelines/churn.yaml", d, merged(TEST_SPEC, overrides))
    return d


def _as_user(url: str, user: str, password: str, options: str = "") -> str:
    p = urlsplit(url)
    netloc = f"{user}:{password}@{p.hostname}:{p.port}"
    from urllib.parse import quote

    return urlunsplit((p.scheme, netloc, p.path, f"options={quote(options)}" if options else "", ""))


def test_prepare_verifies_and_names_the_migrate_command(warehouse, tmp_path, capsys):
    spec_dir = _spec_dir(tmp_path)
    spec = load_spec(spec_dir / "churn.yaml")
    with pytest.raises(SchemaBehindError, match="airtrain migrate"):
        schema.prepare(warehouse, spec, auto_migrate=False)  # nothing applied yet: the daily run creates nothing
    assert fetch(warehouse, "SELECT to_regclass('registry.schema_migrations')") == [(None,)]
    assert migrate.main(["--url", warehouse.uri, "--spec-dir", str(spec_dir), "--check"]) == 1
    capsys.readouterr()
    assert migrate.main(["--url", warehouse.uri, "--spec-dir", str(spec_dir)]) == 0
    first = capsys.readouterr().out  # review 16: the first migrate said "columns added" to the tables it created
    assert first.startswith("churn: schema up to date") and "columns added" not in first, first
    assert migrate.main(["--url", warehouse.uri, "--spec-dir", str(spec_dir)]) == 0  # idempotent
    assert schema.prepare(warehouse, spec, auto_migrate=False)["schema"] == "verified"
    (row,) = fetch(warehouse, "SELECT pipeline, schema_sha256 IS NOT NULL, applied_by = current_user, "
                              "airtrain_version FROM registry.schema_migrations")
    assert row[:3] == ("churn", True, True) and row[3]
    # a spec change that reaches the DDL (a new feature column) puts the warehouse behind again ...
    data = yaml.safe_load((spec_dir / "churn.yaml").read_text())
    data["features"].append({"name": "extra_score", "type": "float", "nullable": True})
    grown = parse_spec(data)
    with pytest.raises(SchemaBehindError, match=r"behind the spec.*airtrain migrate"):
        verify_schema(warehouse, grown)
    # ... one that does not (model parameters) does not
    data = yaml.safe_load((spec_dir / "churn.yaml").read_text())
    data["training"]["random_state"] = 4242
    assert verify_schema(warehouse, parse_spec(data))["schema"] == "verified"
    # the switch for tests and throw-away warehouses applies it instead
    assert schema.prepare(warehouse, grown, auto_migrate=True)["schema"] == "applied"
    assert verify_schema(warehouse, grown)["schema"] == "verified"


@pytest.fixture
def roles(pg_server, tmp_path):
    """An owner login (may create roles; owns the database) and a task login that is a member of the
    owner role (so it may write the tables and swap partitions) but has no CREATEROLE and is not a
    superuser. Returns (database name, owner URL, task URL)."""
    s = pg_server.session
    owner, task, pw = f"{s}_owner", f"{s}_task", "pw-secret-123"
    db = pg_server.create_database("roles")
    with pg_server.admin() as cur:
        for name, attrs in ((owner, "LOGIN CREATEROLE"), (task, "LOGIN NOCREATEROLE NOSUPERUSER")):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                    sql.Identifier(name), sql.SQL(attrs), sql.Literal(pw)))
        cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db), sql.Identifier(owner)))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(task)))
    url = pg_server.url(db)
    # the task fails fast instead of hanging if anything it does waits for a lock behind the reader
    return db, _as_user(url, owner, pw), _as_user(url, task, pw, "-c lock_timeout=2000")


def test_task_user_without_createrole_runs_the_daily_steps_beside_a_long_reader(roles, pg_server, tmp_path):
    db, owner_url, task_url = roles
    spec_dir = _spec_dir(tmp_path)
    spec = load_spec(spec_dir / "churn.yaml")
    assert migrate.main(["--url", owner_url, "--spec-dir", str(spec_dir)]) == 0  # deploy time, as the owner
    task = Warehouse(task_url)
    assert fetch(task, "SELECT rolcreaterole, rolsuper FROM pg_roles WHERE rolname = current_user") == [(False, False)]
    p = Project(tmp_path / "project", Warehouse(pg_server.url(db)))
    shutil.copytree(spec_dir, p.spec_dir)
    start = dt.date.today() - dt.timedelta(days=12)
    land_days(p, start, 12, rows=200)
    days = [start + dt.timedelta(days=i) for i in range(12)]
    # an analyst's long read transaction on the predictions view and table (as a superuser)
    reader = psycopg2.connect(pg_server.url(db))
    try:
        rc = reader.cursor()
        rc.execute("SELECT count(*) FROM predictions.churn_latest")
        rc.execute("SELECT count(*) FROM predictions.churn")
        # what the old daily prepare did (apply every DDL) waits behind the reader: the view's lock
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            apply_schema(task, spec)
        assert schema.prepare(task, spec, auto_migrate=False)["schema"] == "verified"  # no DDL: no lock to wait for
        retrain.ingest(task, spec, days, "run-1", p.root)
        retrain.validate(task, spec, days, "run-1", today=days[-1], reports_root=tmp_path / "reports")
        trained = retrain.train(task, spec, days[-1], "run-1")
        evaluation = retrain.evaluate(task, spec, int(trained["version"]), "run-1", days[-1])
        promoted = release.promote(task, spec, evaluation, run_id="run-1", actor="test")
        assert promoted["promoted"], promoted
        out = scoring.score_date(task, spec, days[-1], run_id="run-1")  # first partition: ATTACH only
        assert out["rows"] == 200
    finally:
        reader.close()
    assert fetch(task, "SELECT count(*) FROM predictions.churn_latest") == [(200,)]


def test_publish_steps_back_behind_a_long_reader_and_never_queues_readers(warehouse, tmp_path):
    spec = load_spec(_spec_dir(tmp_path) / "churn.yaml")
    apply_schema(warehouse, spec)
    as_of = dt.date(2026, 3, 1)

    def staged(run_id: str, score: float, n: int = 50) -> ScoringTarget:
        return hand_staged(warehouse, spec, target_for(spec, as_of, 1, "champion", run_id), run_id,
                           "SELECT g, %s, 1, %s, %s FROM generate_series(1, %s) g", (as_of, score, run_id, n))

    publishing.publish(warehouse, spec, staged("run-a", 0.1), 50)
    reader = psycopg2.connect(warehouse.uri)
    rc = reader.cursor()
    rc.execute("SELECT count(*) FROM predictions.churn")  # holds ACCESS SHARE until its transaction ends
    result: dict = {}

    def publish() -> None:
        try:
            result["out"] = publishing.publish(warehouse, spec, staged("run-b", 0.9), 50, lock_timeout_ms=200,
                                            max_wait_s=60, backoff_s=0.1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    th = threading.Thread(target=publish)
    th.start()
    try:
        time.sleep(1.0)  # the publish is stepping back and retrying now
        for _ in range(3):  # other readers are served meanwhile (a queued DETACH would block them)
            with psycopg2.connect(warehouse.uri, options="-c statement_timeout=5000") as c2, c2.cursor() as cur:
                cur.execute("SELECT count(*), max(score) FROM predictions.churn")
                assert cur.fetchone() == (50, 0.1)  # still the old partition
            time.sleep(0.2)
        assert th.is_alive() and "out" not in result  # the publish waits for the long reader ...
    finally:
        reader.rollback()  # ... which ends now
        reader.close()
    th.join(60)
    assert "error" not in result, result.get("error")
    assert result["out"]["replaced"] and result["out"]["lock_attempts"] > 1
    assert fetch(warehouse, "SELECT count(*), max(score) FROM predictions.churn") == [(50, 0.9)]


def test_publish_gives_up_with_a_clear_retryable_error(warehouse, tmp_path):
    spec = load_spec(_spec_dir(tmp_path) / "churn.yaml")
    apply_schema(warehouse, spec)
    as_of = dt.date(2026, 3, 2)
    targets = []
    for run_id in ("run-a", "run-b"):
        targets.append(hand_staged(warehouse, spec, target_for(spec, as_of, 1, "champion", run_id), run_id,
                                   "SELECT 1, NULL::date, 1, 0.0, '' WHERE false"))
    publishing.publish(warehouse, spec, targets[0], 0)
    reader = psycopg2.connect(warehouse.uri, application_name="analyst")
    try:
        reader.cursor().execute("SELECT count(*) FROM predictions.churn")
        with pytest.raises(publishing.SwapLockTimeout, match=r"held by pid \d+ \(\w+, analyst"):
            publishing.publish(warehouse, spec, targets[1], 0, lock_timeout_ms=100, max_wait_s=0.5, backoff_s=0.1)
    finally:
        reader.close()
    # nothing was published and the stage is intact: the retry publishes it
    assert publishing.publish(warehouse, spec, targets[1], 0)["replaced"]


def test_a_registry_lock_held_elsewhere_fails_the_step_in_bounded_time(warehouse, monkeypatch):
    """review 6: a session that holds the promotion lock (a stuck promotion, a login that took it by hand
    and went idle) made every promotion wait forever; now it waits AIRTRAIN_REGISTRY_LOCK_TIMEOUT_S and
    fails with a line naming the lock (the task fails and Airflow retries it)."""
    from airtrain.registry import champions
    from airtrain.warehouse.connection import LockTimeoutError, advisory_key, xact_lock

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    monkeypatch.setenv("AIRTRAIN_REGISTRY_LOCK_TIMEOUT_S", "1")
    sep = "&" if "?" in warehouse.uri else "?"
    bounded = Warehouse(f"{warehouse.uri}{sep}options=-c%20statement_timeout%3D20000")  # before the fix: hung
    holder = psycopg2.connect(warehouse.uri)
    try:
        holder.autocommit = True
        holder.cursor().execute("SELECT pg_advisory_lock(%s)", (advisory_key("promote", spec.name),))
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError, match="promote/churn lock was not granted within 1 s"):
            champions.promote(bounded, spec, 1, action="promote", actor="test", reason="r", run_id="r1")
        assert time.monotonic() - t0 < 10
    finally:
        holder.close()
    # once granted, the transaction's own lock_timeout applies again to what follows (table locks)
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = '5s'")
        xact_lock(cur, "promote", spec.name, timeout_s=1)
        cur.execute("SHOW lock_timeout")
        assert cur.fetchone()[0] == "5s"
