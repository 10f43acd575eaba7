"""Warehouse connections and SQL helpers shared by every package: :class:`Warehouse`, quoted
identifiers (:func:`ident`), advisory locks (:func:`xact_lock`) and :func:`read_frame`.

The core never imports Airflow: the Airflow hook (``plugins/airtrain_airflow/hooks.py``) builds a
:class:`Warehouse` from an Airflow connection, tests build one from a URL. Every identifier that
reaches SQL goes through :func:`ident` (``psycopg2.sql.Identifier``) after the spec allow-listed it;
values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from airtrain.spec.names import check_identifier
from airtrain.warehouse.redaction import redact, redact_exception, remember_secret, uri_password


def ident(*parts: str) -> sql.Identifier:
    """A quoted, allow-listed identifier (``schema.table`` when given two parts)."""
    return sql.Identifier(*(check_identifier(p) for p in parts))


@dataclass(frozen=True)
class Warehouse:
    """Where the warehouse is. ``uri`` is a libpq URI: ``postgresql://user:pw@host:port/db``."""

    uri: str
    application_name: str = "airtrain"
    #: artifact signing keys ((id, secret), ...; the first signs), from the Airflow layer's secret
    #: store - never from the warehouse. Empty: ``$AIRTRAIN_ARTIFACT_SECRET_KEYS`` (airtrain.model.artifacts)
    artifact_keys: tuple[tuple[str, bytes], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        remember_secret(uri_password(self.uri))  # masked in every text redact_text cleans
        remember_secret(os.environ.get("PGPASSWORD"))  # libpq's, when the URI has none (compose's init)
        for _kid, key in self.artifact_keys:
            remember_secret(key.decode(errors="replace"))

    def __repr__(self) -> str:  # never print the password
        return f"Warehouse({redact(self.uri)!r})"

    @contextlib.contextmanager
    def connect(self, autocommit: bool = False) -> Generator[psycopg2.extensions.connection, None, None]:
        """A psycopg2 connection; committed on success, rolled back on error, always closed. A
        connection error never carries the password (libpq quotes pieces of a malformed URI)."""
        try:
            conn = psycopg2.connect(self.uri, application_name=self.application_name)
        except psycopg2.Error as exc:
            redact_exception(exc)
            raise
        try:
            conn.autocommit = autocommit
            yield conn
            if not autocommit:
                conn.commit()
        except BaseException:
            if not autocommit:
                conn.rollback()
            raise
        finally:
            conn.close()

    def adbc_uri(self) -> str:
        return self.uri.replace("postgresql+psycopg2://", "postgresql://")


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` from a name."""
    digest = hashlib.blake2b("/".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LockTimeoutError(RuntimeError):
    """An advisory lock was not granted within its timeout: another session holds it (a long
    promotion, or a session that took it by hand and stays connected). The transaction is rolled back;
    the task fails and Airflow retries it."""


#: how long a registry lock (registering a version, promoting, a canary, a status change) waits for
#: another session's; ``$AIRTRAIN_REGISTRY_LOCK_TIMEOUT_S`` overrides. Those transactions last
#: milliseconds to seconds: a wait longer than this is a stuck or foreign holder, not a queue.
REGISTRY_LOCK_TIMEOUT_S = 120.0


def registry_lock_timeout() -> float:
    value = os.environ.get("AIRTRAIN_REGISTRY_LOCK_TIMEOUT_S", "").strip()
    return float(value) if value else REGISTRY_LOCK_TIMEOUT_S


def xact_lock(cur: Any, *parts: str, timeout_s: float | None = None) -> None:
    """Take a transaction-scoped advisory lock (released at commit/rollback). ``timeout_s``: wait at
    most that long (``lock_timeout`` for this one statement, or the session's if that is stricter; the
    transaction's own setting is restored after), then raise :class:`LockTimeoutError` naming the lock."""
    key = advisory_key(*parts)
    if timeout_s is None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        return
    # pg_settings.setting is in milliseconds: a stricter lock_timeout of the session (or transaction) wins
    cur.execute("SELECT current_setting('lock_timeout'), setting::bigint FROM pg_settings WHERE name = 'lock_timeout'")
    before, before_ms = cur.fetchone()
    wait_ms = max(1, int(timeout_s * 1000))
    wait_ms = min(wait_ms, int(before_ms)) if before_ms else wait_ms
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait_ms}ms",))
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
    except psycopg2.errors.LockNotAvailable:
        raise LockTimeoutError(
            f"the {'/'.join(parts)} lock was not granted within {wait_ms / 1000:g} s: another session holds it "
            f"(pg_locks: locktype 'advisory', classid::bigint << 32 | objid::bigint = {key}; its pid in "
            "pg_stat_activity); nothing was changed") from None
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (before,))


def registry_lock(cur: Any, *parts: str) -> None:
    """:func:`xact_lock` for the registry's locks, bounded by :func:`registry_lock_timeout`."""
    xact_lock(cur, *parts, timeout_s=registry_lock_timeout())


def read_frame(wh: Warehouse, query: sql.Composable, params: dict[str, Any] | tuple[Any, ...] | None = None):
    """Run ``query`` and return a pandas DataFrame (column names from the cursor)."""
    import pandas as pd

    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=cols)
