"""Redaction: the ONE function every boundary applies to text that leaves the process (logs, alerts,
the UI, exceptions handed to Airflow, CLI output): :func:`redact_text`. Never print a secret.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import psycopg2.extensions

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
        return unquote(m["pw"]) if "%" in m["pw"] and " " not in m["pw"] else m["pw"]
    try:
        return psycopg2.extensions.parse_dsn(uri).get("password")
    except Exception:  # noqa: BLE001 - not a DSN either
        return None
