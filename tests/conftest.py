"""Shared fixtures: a real, throw-away PostgreSQL server for the whole test session, one Airflow
metadata database per pytest-xdist worker, and database templates so that expensive set-ups
(Airflow's migrations, a warehouse with landed data and a trained champion) are built once per
session and copied (``CREATE DATABASE … TEMPLATE``) for every test that needs one.

The server starts in ``pytest_configure`` of the controlling process — before anything imports
Airflow, because Airflow reads its metadata-database URL once, at import. xdist workers inherit its
URL through ``AIRTRAIN_TEST_PG_URL`` (set it yourself, as a libpq URL to a server where the user may
create databases and roles, e.g. ``postgresql://u:pw@127.0.0.1:5432/postgres``, to use an existing
server); every worker then points Airflow at its own metadata database.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
for _p in ("include", "plugins", "dev"):
    if str(PROJECT_ROOT / _p) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT / _p))

from airtrain.warehouse.connection import Warehouse  # noqa: E402
from airtrain_dev.localpg import LocalPostgres, free_port  # noqa: E402

#: the DAG bundle of every stack (scripts/devstack.py, docker-compose.yaml): one generated DAG file per spec
BUNDLE_CONFIG = '[{"name": "airtrain", "classpath": "airtrain_airflow.bundle.SpecDagBundle", "kwargs": {}}]'

#: this process's xdist worker id ("gw0", "gw1", ...) or "main" without xdist
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


class PgServer:
    """A running server that hands out fresh databases and copies of template databases."""

    def __init__(self, base_url: str, session: str) -> None:
        self.base_url = base_url.rstrip("/")  # postgresql://user:pw@host:port
        self.session = session  # prefix of every database this test session creates

    def url(self, database: str) -> str:
        return f"{self.base_url}/{database}"

    @contextlib.contextmanager
    def admin(self) -> Generator[Any, None, None]:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def exists(self, name: str) -> bool:
        with self.admin() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None

    def create_database(self, prefix: str = "t", name: str | None = None, template: str | None = None) -> str:
        """Create a database (a copy of ``template`` when given); returns its name."""
        from psycopg2 import sql

        name = name or f"{self.session}_{prefix}_{uuid.uuid4().hex[:8]}"
        with self.admin() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                return name
            if template is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return name
            # a template may not have other sessions connected while it is copied
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (template,))
            cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                         sql.Identifier(template)))
        return name

    @contextlib.contextmanager
    def lock(self, name: str) -> Generator[None, None, None]:
        """A server-wide lock (session-level advisory lock) shared by the xdist workers."""
        key = int.from_bytes(hashlib.blake2b(f"{self.session}/{name}".encode(), digest_size=8).digest(), "big",
                             signed=True)
        with self.admin() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def template(self, key: str, build: Callable[[str], None]) -> str:
        """The name of template database ``key``, built by ``build(name)`` the first time any worker
        asks for it (the others wait for the lock, then find it)."""
        name = f"{self.session}_tpl_{key}"[:63]
        ready = f"{name}_ok"[:63]  # marker: a template whose build finished (a failed build is retried)
        with self.lock(f"template/{key}"):
            if self.exists(ready):
                return name
            with self.admin() as cur:
                from psycopg2 import sql

                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            self.create_database(name=name)
            build(name)
            self.create_database(name=ready)
        return name

    def drop_session_databases(self) -> None:
        from psycopg2 import sql

        with self.admin() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{self.session}\\_%",))
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


_STATE: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"airtrain-test-{WORKER}-"))
    _STATE["tmp"] = tmp
    controller = not hasattr(config, "workerinput")  # the xdist controller, or a run without xdist
    if controller and not os.environ.get("AIRTRAIN_TEST_PG_URL"):
        pg = LocalPostgres(tmp / "pgdata", free_port(), secrets.token_hex(12), fast_unsafe=True)
        pg.start()
        _STATE["pg"] = pg
        os.environ["AIRTRAIN_TEST_PG_URL"] = pg.url("postgres")  # xdist workers inherit it
    if controller:
        os.environ.setdefault("AIRTRAIN_TEST_SESSION", f"s{uuid.uuid4().hex[:6]}")
    server = PgServer(os.environ["AIRTRAIN_TEST_PG_URL"].rsplit("/", 1)[0], os.environ["AIRTRAIN_TEST_SESSION"])
    _STATE["server"] = server
    _STATE["controller"] = controller
    meta_db = f"{server.session}_airflow_{WORKER}"  # created from a migrated template by `airflow_db`
    home = tmp / "airflow_home"
    (home / "plugins").mkdir(parents=True)
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": server.url(meta_db).replace("postgresql://", "postgresql+psycopg2://", 1),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # one generated DAG file per spec of $AIRTRAIN_SPEC_DIR (airtrain_airflow.bundle), as every stack runs it
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": BUNDLE_CONFIG,
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp / "dag_bundles"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),  # the plugin comes from the entry point
        "AIRTRAIN_PROJECT_ROOT": str(PROJECT_ROOT),
        "AIRTRAIN_REPORTS_DIR": str(tmp / "reports"),
        # the tests' projects are created on the fly: the daily prepare applies their schema (a
        # deployment runs `airtrain migrate` instead; tests/integration/test_schema_deploy.py)
        "AIRTRAIN_AUTO_MIGRATE": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "SCARF_ANALYTICS": "false",
    })
    # One OpenMP thread per worker: the xdist workers already use both cores, and GNU OpenMP's
    # thread pool does not survive a fork (tests fork warm children: tests/integration/forked.py)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE["meta_db"] = meta_db
    _check_each_param_schema_once()


def _check_each_param_schema_once() -> None:
    """Airflow resolves every DAG Param ~60 times per task, and each resolve re-checks the Param's
    (static) JSON schema against the metaschema — ~1,000 metaschema checks, ~10% of a test DAG run.
    The check of one schema always gives the same answer, so the test session does it once per
    schema; the value itself is still validated every time, exactly as ``jsonschema.validate`` does
    (this is its body with the metaschema check remembered)."""
    import json

    import jsonschema
    from jsonschema import exceptions, validators

    checked: set[tuple[type, str]] = set()

    def validate(instance: Any, schema: Any, cls: Any = None, *args: Any, **kwargs: Any) -> None:
        if cls is None:
            cls = validators.validator_for(schema)
        key = (cls, json.dumps(schema, sort_keys=True, default=repr))
        if key not in checked:
            cls.check_schema(schema)  # raises for a bad schema: never remembered
            checked.add(key)
        error = exceptions.best_match(cls(schema, *args, **kwargs).iter_errors(instance))
        if error is not None:
            raise error

    jsonschema.validate = validate


#: The modules that take longest (test seconds per module from ``--durations``, 3 workers), longest
#: first. ``make test`` runs with ``--dist loadscope --no-loadscope-reorder``: each module goes whole
#: to one xdist worker in collection order, so starting the long ones first (longest processing time
#: first) keeps the last minutes from being one worker finishing a long module alone. A module not
#: listed runs after these, in its usual order; the list only orders, it selects nothing.
LONGEST_FIRST = [
    "test_faults.py", "test_retries.py", "test_retrain_dag.py", "test_monitor_dag.py", "test_drift_story.py",
    "test_canary.py", "test_run_plan.py", "test_faults_races.py", "test_concurrency.py",
    "test_prediction_explain_fairness_monitor.py", "test_approval.py", "test_security.py", "test_readers.py",
    "test_fair_gate.py", "test_dag_integrity.py", "test_explain_fairness.py", "test_openlineage.py",
    "test_assets.py", "test_fail_fast.py", "test_scoring.py", "test_bad_inputs.py", "test_schema_deploy.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's own order is kept


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _STATE.get("server")
    pg = _STATE.get("pg")
    if isinstance(pg, LocalPostgres):
        pg.stop()
    elif _STATE.get("controller") and isinstance(server, PgServer):
        with contextlib.suppress(Exception):  # an external server: leave it as we found it
            server.drop_session_databases()
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


def _migrate_airflow(pg_server: PgServer, name: str) -> None:
    """Airflow's metadata schema in database ``name``, in a child process (this process's Airflow
    is bound to its own database)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_server.url(name).replace("postgresql://",
                                                                              "postgresql+psycopg2://", 1)}
    out = subprocess.run([sys.executable, "-c", "from airflow.utils import db; db.initdb()"], env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"airflow db migration failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


@pytest.fixture(scope="session")
def airflow_db(pg_server: PgServer) -> None:
    """This worker's Airflow metadata database: a copy of one migrated once per session."""
    template = pg_server.template("airflow", lambda name: _migrate_airflow(pg_server, name))
    pg_server.create_database(name=str(_STATE["meta_db"]), template=template)


@pytest.fixture(autouse=True)
def _fresh_object_stores() -> Generator[None, None, None]:
    """Airflow caches an object store (its filesystem, endpoint and credentials) per connection id for the
    life of the process; a test module that starts its own S3 server and sets ``AIRFLOW_CONN_AWS_DEFAULT``
    must not get the filesystem of the server an earlier module on the same worker stopped."""
    yield
    store = sys.modules.get("airflow.sdk.io.store")
    if store is not None:
        store._STORE_CACHE.clear()  # noqa: SLF001 - the cache has no public reset
