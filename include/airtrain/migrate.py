"""Deploy-time schema migration: ``airtrain migrate`` / ``python -m airtrain.migrate``.

Applies every spec's warehouse DDL (:func:`airtrain.warehouse.ddl.apply_schema`: idempotent, additive,
one locked transaction per pipeline) and records its fingerprint in
``registry.schema_migrations``. Run it at deploy (``make run`` and compose's ``airflow-init`` do)
as a login that may create tables and roles; the daily runs then only verify the fingerprint and
need neither CREATEROLE nor DDL locks. ``--check`` only verifies (exit 1 when a pipeline is behind).

    WAREHOUSE_URL=postgresql://owner:<password>@host/db airtrain migrate [--spec-dir include/pipelines] [--check]

One broken spec breaks only itself: the others are migrated, each broken one is named on stderr
(file, key, fix) and the exit code is 1. Nothing printed carries a password (the URL is redacted).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from airtrain import invariants
from airtrain.model.artifacts import ArtifactSignatureError
from airtrain.registry.versions import resign_artifacts
from airtrain.spec import scan_specs
from airtrain.steps.schema import apply_schema, verify_schema
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.ddl import SchemaBehindError
from airtrain.warehouse.redaction import redact_exception, redact_text
from airtrain.warehouse.roles import ReaderLoginError, create_reader_login, setup_roles


def _valid_specs(spec_dir: str | None) -> tuple[list, int]:
    """The specs that load; each one that does not is named on stderr (its file, key and fix) - one
    broken spec never stops the others. Returns (specs, number of broken ones)."""
    scan = scan_specs(Path(spec_dir) if spec_dir else None)
    for err in scan.errors:  # one line each: the file, the key(s), what is wrong
        print(f"error: invalid pipeline spec {err.path}: {'; '.join(err.problems)} (skipped; fix the spec and "
              "run this again)", file=sys.stderr)
    return scan.specs, len(scan.errors)


def _url(args: argparse.Namespace) -> str | None:
    return args.url or os.environ.get("WAREHOUSE_URL") or os.environ.get("AIRFLOW_CONN_WAREHOUSE")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="airtrain migrate", description="apply the warehouse schema of every "
                                 "pipeline spec (deploy time; idempotent)")
    ap.add_argument("--url", default=None,
                    help="warehouse URL of a login that may create tables and roles (default: $WAREHOUSE_URL, "
                         "then $AIRFLOW_CONN_WAREHOUSE; prefer those: a command line is visible to every user "
                         "of the machine)")
    ap.add_argument("--spec-dir", default=None, help="folder of the pipeline specs (default: $AIRTRAIN_SPEC_DIR)")
    ap.add_argument("--check", action="store_true", help="only verify; exit 1 when a pipeline is behind")
    args = ap.parse_args(argv)
    url = _url(args)
    if not url:
        print("error: set WAREHOUSE_URL (or pass --url)", file=sys.stderr)
        return 2
    wh = Warehouse(url)
    specs, broken = _valid_specs(args.spec_dir)
    behind = failed = 0
    for spec in specs:
        try:
            if args.check:
                try:
                    print(f"{spec.name}: {verify_schema(wh, spec)['schema']}")
                except SchemaBehindError as exc:
                    print(f"{exc}", file=sys.stderr)
                    behind += 1
            else:
                print(f"{apply_schema(wh, spec)} on {redact_text(url)}")
        except Exception as exc:  # noqa: BLE001 - one line per pipeline, never a traceback with the URL
            redact_exception(exc)
            print(f"error: {spec.name}: {type(exc).__name__}: {redact_text(str(exc)).strip()}", file=sys.stderr)
            failed += 1
    if broken:
        print(f"error: {broken} spec(s) not loaded (named above); "
              f"{'checked' if args.check else 'migrated'} the {len(specs) - failed} others", file=sys.stderr)
    return 1 if behind or failed or broken else 0


def cli(argv: list[str] | None = None) -> int:
    """The ``airtrain`` console script: ``airtrain migrate ...``, ``airtrain create-reader-login ...``,
    ``airtrain setup-roles ...``, ``airtrain check ...`` (the warehouse invariants, :mod:`airtrain.invariants`)
    (also ``python -m airtrain.migrate <command> ...``)."""
    argv = sys.argv[1:] if argv is None else argv
    commands = _commands()
    if not argv or argv[0] not in commands:
        print(f"usage: airtrain {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


def _commands() -> dict:
    return {"migrate": main, "create-reader-login": create_reader_login_cli, "resign-artifacts": resign,
            "setup-roles": setup_roles_cli, "check": _check}


def _check(argv: list[str] | None = None) -> int:
    return invariants.main(argv)


def resign(argv: list[str] | None = None) -> int:
    """``airtrain resign-artifacts``: sign every model version with the newest key in
    ``$AIRTRAIN_ARTIFACT_SECRET_KEYS`` (enabling signing on an existing warehouse, or retiring a key)."""
    ap = argparse.ArgumentParser(prog="airtrain resign-artifacts", description="sign the model artifacts with the "
                                 "newest key in $AIRTRAIN_ARTIFACT_SECRET_KEYS (trusts the rows as they are now)")
    ap.add_argument("--url", default=None, help="warehouse URL (default: $WAREHOUSE_URL, then $AIRFLOW_CONN_WAREHOUSE)")
    ap.add_argument("--spec-dir", default=None)
    args = ap.parse_args(argv)
    url = _url(args)
    if not url:
        print("error: set WAREHOUSE_URL (or pass --url)", file=sys.stderr)
        return 2
    specs, broken = _valid_specs(args.spec_dir)
    try:
        for spec in specs:
            print(f"{spec.name}: signed versions {resign_artifacts(Warehouse(url), spec)}")
    except ArtifactSignatureError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    return 1 if broken else 0


def setup_roles_cli(argv: list[str]) -> int:
    """``airtrain setup-roles``: the owner role and the workers' task login (deploy time, as a superuser)."""
    ap = argparse.ArgumentParser(prog="airtrain setup-roles", description="deploy time, as the warehouse's "
                                 "superuser: the owner role of the airtrain objects and the workers' task login "
                                 "(no CREATEROLE); the connection comes from WAREHOUSE_URL or libpq's PG* "
                                 "variables, the task password from an environment variable, never argv")
    ap.add_argument("--owner-role", default="airtrain_owner")
    ap.add_argument("--task-login", default=os.environ.get("WAREHOUSE_TASK_USER") or "airtrain_task")
    ap.add_argument("--task-password-env", default="WAREHOUSE_TASK_PASSWORD",
                    help="the environment variable holding the task login's password")
    ap.add_argument("--spec-dir", default=None)
    args = ap.parse_args(argv)
    password = os.environ.get(args.task_password_env) or ""
    if not password:
        print(f"error: set {args.task_password_env} to the task login's password", file=sys.stderr)
        return 2
    scan = scan_specs(args.spec_dir)
    readers = sorted({s.warehouse.reader_role for s in scan.specs} | {"predictions_reader"})
    try:
        for line in setup_roles(Warehouse(os.environ.get("WAREHOUSE_URL") or ""), owner_role=args.owner_role,
                                task_login=args.task_login, task_password=password, reader_roles=readers):
            print(line)
    except (ReaderLoginError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _login_uri(url: str, name: str) -> str:
    """``url`` with its user replaced by ``name`` and no password (for the printed psql command)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{name}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(("postgresql", netloc, parts.path, "", ""))


def create_reader_login_cli(argv: list[str]) -> int:
    """``airtrain create-reader-login <name>``: an analyst's read-only login (inherits the reader role)."""
    ap = argparse.ArgumentParser(
        prog="python -m airtrain.schema create-reader-login",
        description="create a LOGIN role that inherits the read-only reader role (predictions, labels, "
                    "registry history, validation and drift results)")
    ap.add_argument("name", help="the login to create (lower-case letters, digits, underscores)")
    ap.add_argument("--url", default=os.environ.get("WAREHOUSE_URL"), help="warehouse URL of an admin user")
    ap.add_argument("--reader-role", default="predictions_reader", help="the role to inherit (spec key "
                    "warehouse.reader_role; default predictions_reader)")
    ap.add_argument("--password-stdin", action="store_true", help="read the password from stdin instead of "
                    "generating one")
    ap.add_argument("--reset-password", action="store_true", help="the login exists: give it a new password")
    args = ap.parse_args(argv)
    if not args.url:
        print("error: pass --url or set WAREHOUSE_URL", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else secrets.token_urlsafe(18)
    try:
        done = create_reader_login(Warehouse(args.url), args.name, password, reader_role=args.reader_role,
                                   reset_password=args.reset_password)
    except ReaderLoginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{done}: login {args.name} (inherits {args.reader_role}: read-only)")
    if not args.password_stdin:
        print(f"password: {password}   (shown once; store it in a password manager or ~/.pgpass)")
    print(f"connect:  psql '{_login_uri(args.url, args.name)}'")
    return 0


if __name__ == "__main__":  # python -m airtrain.migrate [--url ...] | python -m airtrain.migrate <command> ...
    _argv = sys.argv[1:]
    raise SystemExit(cli(_argv) if _argv and _argv[0] in _commands() else main(_argv))
