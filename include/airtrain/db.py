"""Warehouse connections and SQL helpers shared by the core modules.

The core never imports Airflow: the Airflow hook (``plugins/airtrain_airflow/hooks.py``) builds a
:class:`Warehouse` from an Airflow connection, tests build one from a URL. Every identifier that
reaches SQL goes through :func:`ident` (``psycopg2.sql.Identifier``) after the spec allow-listed it;
values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from airtrain.spec import check_identifier


def ident(*parts: str) -> sql.Identifier:
    """A quoted, allow-listed identifier (``schema.table`` when given two parts)."""
    return sql.Identifier(*(check_identifier(p) for p in parts))


@dataclass(frozen=True)
class Warehouse:
    """Where the warehouse is. ``uri`` is a libpq URI: ``postgresql://user:pw@host:port/db``."""

    uri: str
    application_name: str = "airtrain"
    #: artifact signing keys ((id, secret), ...; the first signs), from the Airflow layer's secret
    #: store - never from the warehouse. Empty: ``$AIRTRAIN_ARTIFACT_SECRET_KEYS`` (airtrain.artifacts)
    artifact_keys: tuple[tuple[str, bytes], ...] = field(default=(), repr=False, compare=False)

    def __repr__(self) -> str:  # never print the password
        return f"Warehouse({redact(self.uri)!r})"

    @contextlib.contextmanager
    def connect(self, autocommit: bool = False) -> Generator[psycopg2.extensions.connection, None, None]:
        """A psycopg2 connection; committed on success, rolled back on error, always closed."""
        conn = psycopg2.connect(self.uri, application_name=self.application_name)
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


def redact(uri: str) -> str:
    """``uri`` with its password replaced by ``***``."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


_URI_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]+:)[^@\s]+@")


def redact_text(text: str) -> str:
    """``text`` with the password of every URI in it replaced by ``***`` (for logs and alerts)."""
    return _URI_PASSWORD.sub(r"\1***@", text)


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` from a name."""
    digest = hashlib.blake2b("/".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def xact_lock(cur: Any, *parts: str) -> None:
    """Take a transaction-scoped advisory lock (released at commit/rollback)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(*parts),))
