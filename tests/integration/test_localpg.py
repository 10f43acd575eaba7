"""The embedded PostgreSQL launcher: real servers, loopback only, stopped afterwards."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import psycopg2
import pytest
from airtrain_dev.localpg import LocalPgError, LocalPostgres, find_bindir, free_port

pytestmark = pytest.mark.integration


def _bundled_bin() -> Path | None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "pg_ctl").exists() else None


@pytest.mark.parametrize("source", [pytest.param("system", id="system-or-path"),
                                    pytest.param("bundled", id="pgserver-wheel")])
def test_start_query_restart_stop(tmp_path, monkeypatch, source):
    if source == "bundled":
        bundled = _bundled_bin()
        assert bundled is not None, "pgserver is pinned in requirements.txt for this Python; it must be installed"
        monkeypatch.setenv("PG_BIN", str(bundled))
        assert find_bindir() == bundled
    pg = LocalPostgres(tmp_path / "data", free_port(), "s3cret-pw", fast_unsafe=True)
    pg.start()
    try:
        pg.start()  # idempotent: already running is fine
        pg.create_database("wh")
        pg.create_database("wh")  # idempotent
        with psycopg2.connect(pg.url("wh")) as conn, conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
            cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        conn.close()
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(pg.url("wh").replace("s3cret-pw", "wrong"))
        pg.stop()
        assert not pg.running()
        pg.start()  # data survives a restart
        with psycopg2.connect(pg.url("wh")) as conn, conn.cursor() as cur:
            cur.execute("SELECT x FROM t")
            assert cur.fetchall() == [(1,)]
        conn.close()
    finally:
        pg.stop()
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", pg.port), timeout=2).close()


def test_missing_binaries_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("PG_BIN", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(LocalPgError, match="no PostgreSQL binaries found"):
        find_bindir()


def test_make_pg_restart_restarts_only_postgresql_and_keeps_the_data(tmp_path):
    """`make pg-restart` (issue 20, item 22): starts a stopped server, restarts a running one (a new
    postmaster), the data stays; the password is never printed."""
    import os
    import subprocess
    import sys

    port, password = free_port(), "pw-not-to-be-printed"
    (tmp_path / ".env").write_text(f"LOCAL_PG_PORT={port}\nLOCAL_PG_PASSWORD={password}\n")
    env = {**os.environ, "AIRTRAIN_ENV_FILE": str(tmp_path / ".env"), "AIRTRAIN_LOCAL_DIR": str(tmp_path / "local")}
    root = Path(__file__).resolve().parents[2]
    pg = LocalPostgres(tmp_path / "local" / "pgdata", port, password)

    def restart() -> str:
        out = subprocess.run([sys.executable, str(root / "scripts/devstack.py"), "pg-restart"], env=env, cwd=root,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert password not in out.stdout + out.stderr
        return out.stdout

    def started_at():
        with psycopg2.connect(pg.url("postgres")) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()")
            return cur.fetchone()[0]

    try:
        assert f"PostgreSQL started on 127.0.0.1:{port}" in restart()
        pg.create_database("warehouse")
        with psycopg2.connect(pg.url("warehouse")) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        before = started_at()
        assert f"PostgreSQL restarted on 127.0.0.1:{port}" in restart()
        assert started_at() > before
        with psycopg2.connect(pg.url("warehouse")) as conn, conn.cursor() as cur:
            cur.execute("SELECT x FROM t")
            assert cur.fetchall() == [(7,)]
    finally:
        pg.stop()
