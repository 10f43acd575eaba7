"""Deploy-time helpers of the Docker Compose stack's ``airflow-init`` (docker-compose.yaml, docs/COMPOSE.md).

* ``airtrain check-secrets NAME...`` refuses to go on when one of the named environment variables is
  empty, a placeholder (``change-me-...``, ``changeme``, ``secret``, ``password``, ...) or too short:
  compose's ``${VAR:?}`` only refuses empty ones, and a stack must not start with a password everyone
  knows; the Fernet key and the artifact signing keys must also be in their format. Only the NAMES are
  printed, never a value.
* ``airtrain write-secrets`` writes, from the environment, the two files the long-running services
  read their passwords from, so that no password sits in a connection URI (where ``@ / : # % ?``
  break it and libpq's error then quotes it) or in their environment:

  - a libpq password file (``PGPASSFILE``: ``host:port:database:user:password`` lines, ``:`` and
    ``\\`` escaped) for the metadata database and the warehouse's task login; the URIs the services
    use carry no password and libpq finds it there;
  - the simple auth manager's ``passwords.json`` (a real JSON encoder: a ``"`` or ``\\`` in a password
    cannot break it).

  Both with mode 0600, owned by the Airflow user (``--uid``) when run as root.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
from pathlib import Path

from airtrain.model.artifacts import ArtifactSignatureError, parse_keys

#: values that are documentation, not secrets (compared case-insensitively, after trimming)
PLACEHOLDERS = re.compile(r"^(change[-_ ]?me.*|.*placeholder.*|replace[-_ ]?me.*|todo|xxx+|secret|password|passw0rd|"
                          r"admin|airflow|postgres|warehouse|test|example|default|123456.*)$", re.IGNORECASE)
MIN_LENGTH = 12


def secret_problems(names: list[str], env: dict[str, str] | None = None) -> list[str]:
    """One line per named variable that is not a usable secret (its NAME and why; never its value):
    empty, a placeholder, too short, or - for the variables with a format - not in it
    (:func:`format_problem`)."""
    env = dict(os.environ) if env is None else env
    problems = []
    for name in names:
        value = (env.get(name) or "").strip()
        if not value:
            problems.append(f"{name} is empty")
        elif PLACEHOLDERS.match(value) or any(PLACEHOLDERS.match(p.strip()) for p in value.split(":")[1:2]):
            problems.append(f"{name} is a placeholder, not a secret")
        elif len(value) < MIN_LENGTH:
            problems.append(f"{name} has {len(value)} characters; use at least {MIN_LENGTH}")
        elif problem := format_problem(name, value):
            problems.append(f"{name}: {problem}")
    return problems


def format_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not in the format the variable ``name`` needs, or None. A wrong one would pass the
    init and fail later, in every task or at the first artifact, with a less helpful message:

    * ``*FERNET_KEY``: Airflow's Fernet key(s), comma-separated for rotation - each 32 url-safe base64 bytes;
    * ``*ARTIFACT_SECRET_KEYS``: ``<id>:<secret>,...`` with secrets of 32+ characters
      (:func:`airtrain.model.artifacts.parse_keys`).

    The message never holds the value or a part of it."""
    if name.endswith("FERNET_KEY"):
        keys = [k.strip() for k in value.split(",") if k.strip()]
        for n, key in enumerate(keys, 1):
            try:
                raw = base64.urlsafe_b64decode(key.encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                return (f"Fernet key {n} of {len(keys)} is not 32 url-safe base64-encoded bytes (python -c 'from "
                        "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')")
    elif name.endswith("ARTIFACT_SECRET_KEYS"):
        try:
            parse_keys(value)
        except ArtifactSignatureError as exc:
            return str(exc)
    return None


def pgpass_line(host: str, port: str | int, database: str, user: str, password: str) -> str:
    """One line of a libpq password file (``\\`` and ``:`` escaped in every field)."""
    def esc(field: str | int) -> str:
        return str(field).replace("\\", "\\\\").replace(":", "\\:")

    if "\n" in password or "\r" in password:
        raise ValueError(f"the password of {user}@{host} holds a line break")
    return ":".join(esc(f) for f in (host, port, database, user, password))


def _write_private(path: Path, text: str, uid: int | None) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, owned by ``uid`` (when root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if uid is not None and os.geteuid() == 0:
        os.chown(tmp, uid, 0)
    os.replace(tmp, path)


def write_secrets(env: dict[str, str], *, pgpass: Path, passwords: Path, uid: int | None) -> list[str]:
    """Write the password file and passwords.json from ``env`` (the compose variables)."""
    lines = [
        pgpass_line(env.get("POSTGRES_HOST", "postgres"), 5432, env.get("POSTGRES_DB") or "airflow",
                    env.get("POSTGRES_USER") or "airflow", env["POSTGRES_PASSWORD"]),
        pgpass_line(env.get("WAREHOUSE_HOST_INTERNAL", "warehouse"), 5432, env.get("WAREHOUSE_DB") or "warehouse",
                    env.get("WAREHOUSE_TASK_USER") or "airtrain_task", env["WAREHOUSE_TASK_PASSWORD"]),
    ]
    _write_private(pgpass, "\n".join(lines) + "\n", uid)
    user = env.get("AIRFLOW_WWW_USER") or "admin"
    _write_private(passwords, json.dumps({user: env["AIRFLOW_WWW_PASSWORD"]}) + "\n", uid)
    return [f"wrote {pgpass} (metadata database, warehouse task login; mode 600)",
            f"wrote {passwords} (UI login {user}; mode 600)"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check-secrets":
        problems = secret_problems(argv[1:])
        for p in problems:
            hint = "" if "python -c" in p else (": set a real secret in .env (e.g. python -c 'import secrets; "
                                                 "print(secrets.token_urlsafe(32))')")
            print(f"error: {p}{hint}", file=sys.stderr)
        if not problems:
            print(f"secrets: {len(argv) - 1} checked, none empty, short or a placeholder")
        return 1 if problems else 0
    if argv and argv[0] == "write-secrets":
        ap = argparse.ArgumentParser(prog="airtrain write-secrets")
        ap.add_argument("--pgpass", required=True, type=Path)
        ap.add_argument("--passwords", required=True, type=Path)
        ap.add_argument("--uid", type=int, default=None, help="owner of the files (when run as root)")
        args = ap.parse_args(argv[1:])
        missing = [k for k in ("POSTGRES_PASSWORD", "WAREHOUSE_TASK_PASSWORD", "AIRFLOW_WWW_PASSWORD")
                   if not os.environ.get(k)]
        if missing:
            print(f"error: {', '.join(missing)} not set", file=sys.stderr)
            return 2
        for line in write_secrets(dict(os.environ), pgpass=args.pgpass, passwords=args.passwords, uid=args.uid):
            print(line)
        return 0
    print("usage: airtrain {check-secrets NAME... | write-secrets --pgpass FILE --passwords FILE [--uid UID]}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
