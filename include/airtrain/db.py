"""Warehouse connections and SQL helpers shared by the core modules.

The core never imports Airflow: the Airflow hook (``plugins/airtrain_airflow/hooks.py``) builds a
:class:`Warehouse` from an Airflow connection, tests build one from a URL. Every identifier that
reaches SQL goes through :func:`ident` (``psycopg2.sql.Identifier``) after the spec allow-listed it;
values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
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


# --------------------------------------------------------------------------------------------
# Redaction: the ONE function every boundary applies to text that leaves the process (logs, alerts,
# the UI, exceptions handed to Airflow, CLI output). Never print a secret.
# --------------------------------------------------------------------------------------------

MASK = "***"

#: secrets this process knows (a warehouse password, signing keys): masked wherever they appear,
#: also in the pieces libpq quotes from a malformed URI (``could not translate host name "ss w0rd@h"``)
_KNOWN_SECRETS: set[str] = set()

_SECRET_NAME = (r"(?:[A-Za-z0-9]*[_.-])*(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|"
                r"access[_-]?key|private[_-]?key|fernet[_-]?key|signing[_-]?key|credentials?)(?:[_.-][A-Za-z0-9]*)*")
#: scheme://[user]:<password>@host - the password may be empty-user (``redis://:pw@``), hold spaces, '@',
#: ':' or '/' (unencoded): everything up to the last '@' before a host on the same line, never
#: reaching into the next URI
_URI_PASSWORD = re.compile(
    r"(?P<pre>\b[a-zA-Z][\w+.-]*://[^\s:/@'\"]*:)(?P<pw>(?:(?!://)[^\n])*)"
    r"@(?=[\w.%\[\]-]+(?::\d*)?(?:[/?#\s'\"),;]|$))")
#: key=value (libpq DSNs, query strings, env lines, CLI flags): password=..., ?token=...&, SECRET_KEY='...'
_KV_SECRET = re.compile(
    r"(?P<key>(?<![\w])" + _SECRET_NAME + r")(?P<sep>\s*=\s*|=)(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)",
    re.IGNORECASE)
#: "password": "..." in JSON / Python reprs
_QUOTED_SECRET = re.compile(
    r"(?P<key>([\"'])" + _SECRET_NAME + r"\2\s*:\s*)(?P<q>[\"'])(?P<val>(?:(?!(?P=q))[^\\]|\\.)*)(?P=q)", re.IGNORECASE)
#: --password VALUE on a command line
_FLAG_SECRET = re.compile(r"(?P<flag>(?<![\w-])--?(?:[A-Za-z0-9]*[_-])*(?:password|passwd|secret|token|api[_-]?key|"
                          r"access[_-]?key|secret[_-]?key|private[_-]?key))(?P<sp>\s+)(?!-)(?P<val>\S+)", re.IGNORECASE)
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{12,}")
#: secrets in a URL's path: Slack (and similar) incoming-webhook URLs
_WEBHOOK_PATH = re.compile(r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s'\"<>]+")


def remember_secret(value: str | None) -> None:
    """Make ``value`` (a password, a key) masked by :func:`redact_text` wherever it appears."""
    if value and len(value) >= 4:
        _KNOWN_SECRETS.add(value)


def _secret_pieces() -> list[str]:
    """The known secrets, their URL-encoded forms and the pieces a URI parser splits them into
    (at ``@ : / ? #``: an unencoded password is quoted by libpq in parts), longest first."""
    from urllib.parse import quote

    pieces: set[str] = set()
    for s in _KNOWN_SECRETS:
        pieces.update({s, quote(s, safe=""), quote(s, safe="@:")})
        pieces.update(p for p in re.split(r"[@:/?#]", s) if len(p.strip()) >= 3)
    return sorted(pieces, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with every secret in it replaced by ``***``: the password of every URI (also with an
    empty user or an unencoded password), ``password=``/``token=``/``..._KEY=`` values of key=value
    strings, query parameters and JSON, bearer tokens, Slack webhook paths, and every secret this
    process was told about (:func:`remember_secret`). For logs, alerts, the UI, exceptions and CLI output."""
    if not text:
        return text
    text = str(text)
    for piece in _secret_pieces():
        text = text.replace(piece, MASK)
    text = _URI_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}@" if m["pw"] != MASK else m.group(0), text)
    text = _KV_SECRET.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    text = _QUOTED_SECRET.sub(lambda m: f"{m['key']}{m['q']}{MASK}{m['q']}", text)
    text = _FLAG_SECRET.sub(lambda m: f"{m['flag']}{m['sp']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _WEBHOOK_PATH.sub(lambda m: f"{m.group(1)}{MASK}", text)


def redact(uri: str) -> str:
    """``uri`` with its password replaced by ``***`` (:func:`redact_text`)."""
    return redact_text(uri)


def redact_exception(exc: BaseException) -> BaseException:
    """Redact ``exc`` in place - its message and those of its causes - before it leaves the process
    (raised to Airflow, printed by a CLI). Returns it; its type (and so retry behaviour) is kept."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        try:
            e.args = tuple(redact_text(a) if isinstance(a, str) else a for a in e.args)
        except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
            pass
        notes = getattr(e, "__notes__", None)
        if notes:
            e.__notes__ = [redact_text(n) for n in notes]
        e = e.__cause__ or e.__context__
    return exc


def uri_password(uri: str) -> str | None:
    """The password in a libpq URI (everything between ``user:`` and the LAST ``@``, as a reader of an
    unencoded password means it) or key=value DSN; None when it has none."""
    m = re.match(r"^[a-zA-Z][\w+.-]*://[^:/@]*:(?P<pw>.*)@[^@]*$", uri.strip(), re.S)
    if m:
        from urllib.parse import unquote

        return unquote(m["pw"]) if "%" in m["pw"] and " " not in m["pw"] else m["pw"]
    try:
        return psycopg2.extensions.parse_dsn(uri).get("password")
    except Exception:  # noqa: BLE001 - not a DSN either
        return None


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` from a name."""
    digest = hashlib.blake2b("/".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def xact_lock(cur: Any, *parts: str) -> None:
    """Take a transaction-scoped advisory lock (released at commit/rollback)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(*parts),))
