"""Shared fixtures: a real, throw-away PostgreSQL server for the whole test session.

The server starts in ``pytest_configure`` — before anything imports Airflow — because Airflow reads
its metadata-database URL once, at import. Set ``AIRTRAIN_TEST_PG_URL`` (a libpq URL to a server
where the user may create databases and roles, e.g. ``postgresql://u:pw@127.0.0.1:5432/postgres``)
to use an existing server; otherwise the session starts its own with :mod:`airtrain_dev.localpg` on a
free loopback port and stops it at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
for _p in ("include", "plugins", "dags", "dev"):
    if str(PROJECT_ROOT / _p) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT / _p))

from airtrain.db import Warehouse  # noqa: E402
from airtrain_dev.localpg import LocalPostgres, free_port  # noqa: E402


class PgServer:
    """A running server that hands out fresh databases."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")  # postgresql://user:pw@host:port

    def url(self, database: str) -> str:
        return f"{self.base_url}/{database}"

    def create_database(self, prefix: str = "t", name: str | None = None) -> str:
        import psycopg2
        from psycopg2 import sql

        name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.close()
        return name


_STATE: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="airtrain-test-"))
    _STATE["tmp"] = tmp
    external = os.environ.get("AIRTRAIN_TEST_PG_URL")
    if external:
        server = PgServer(external.rsplit("/", 1)[0])
    else:
        pg = LocalPostgres(tmp / "pgdata", free_port(), secrets.token_hex(12), fast_unsafe=True)
        pg.start()
        _STATE["pg"] = pg
        server = PgServer(pg.url("").rsplit("/", 1)[0])
    _STATE["server"] = server
    meta_db = server.create_database(name="airflow_meta_test")
    home = tmp / "airflow_home"
    home.mkdir()
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": server.url(meta_db).replace("postgresql://", "postgresql+psycopg2://", 1),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),  # the plugin comes from the entry point
        "AIRTRAIN_PROJECT_ROOT": str(PROJECT_ROOT),
        "AIRTRAIN_REPORTS_DIR": str(tmp / "reports"),
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "SCARF_ANALYTICS": "false",
    })


def pytest_unconfigure(config: pytest.Config) -> None:
    pg = _STATE.get("pg")
    if isinstance(pg, LocalPostgres):
        pg.stop()
    tmp = _STATE.get("tmp")
    if isinstance(tmp, Path):
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    server = _STATE["server"]
    assert isinstance(server, PgServer)
    return server


@pytest.fixture
def warehouse(pg_server: PgServer) -> Warehouse:
    """A fresh, empty warehouse database for one test."""
    return Warehouse(pg_server.url(pg_server.create_database("wh")))


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata schema, migrated once per session (for dag.test())."""
    from airflow.utils import db

    db.initdb()
