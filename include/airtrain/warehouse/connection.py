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


def xact_lock(cur: Any, *parts: str) -> None:
    """Take a transaction-scoped advisory lock (released at commit/rollback)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(*parts),))


def read_frame(wh: Warehouse, query: sql.Composable, params: dict[str, Any] | tuple[Any, ...] | None = None):
    """Run ``query`` and return a pandas DataFrame (column names from the cursor)."""
    import pandas as pd

    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=cols)
