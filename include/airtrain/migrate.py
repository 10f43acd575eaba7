"""Deploy-time schema migration: ``airtrain migrate`` / ``python -m airtrain.migrate``.

Applies every spec's warehouse DDL (:func:`airtrain.schema.apply_schema`: idempotent, additive,
one locked transaction per pipeline) and records its fingerprint in
``registry.schema_migrations``. Run it at deploy (``make run`` and compose's ``airflow-init`` do)
as a login that may create tables and roles; the daily runs then only verify the fingerprint and
need neither CREATEROLE nor DDL locks. ``--check`` only verifies (exit 1 when a pipeline is behind).

    airtrain migrate --url postgresql://owner@host/db [--spec-dir include/pipelines] [--check]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from airtrain.db import Warehouse, redact
    from airtrain.schema import SchemaBehindError, apply_schema, verify_schema
    from airtrain.spec import load_specs

    ap = argparse.ArgumentParser(prog="airtrain migrate", description="apply the warehouse schema of every "
                                 "pipeline spec (deploy time; idempotent)")
    ap.add_argument("--url", default=os.environ.get("WAREHOUSE_URL") or os.environ.get("AIRFLOW_CONN_WAREHOUSE"),
                    help="warehouse URL of a login that may create tables and roles (default: $WAREHOUSE_URL, "
                         "then $AIRFLOW_CONN_WAREHOUSE)")
    ap.add_argument("--spec-dir", default=None, help="folder of the pipeline specs (default: $AIRTRAIN_SPEC_DIR)")
    ap.add_argument("--check", action="store_true", help="only verify; exit 1 when a pipeline is behind")
    args = ap.parse_args(argv)
    if not args.url:
        print("error: pass --url or set WAREHOUSE_URL", file=sys.stderr)
        return 2
    wh = Warehouse(args.url)
    behind = 0
    for spec in load_specs(Path(args.spec_dir) if args.spec_dir else None):
        if args.check:
            try:
                print(f"{spec.name}: {verify_schema(wh, spec)['schema']}")
            except SchemaBehindError as exc:
                print(f"{exc}", file=sys.stderr)
                behind += 1
        else:
            print(f"{apply_schema(wh, spec)} on {redact(args.url)}")
    return 1 if behind else 0


def cli(argv: list[str] | None = None) -> int:
    """The ``airtrain`` console script: ``airtrain migrate ...``, ``airtrain create-reader-login ...``,
    ``airtrain check ...`` (the warehouse invariants, :mod:`airtrain.invariants`)."""
    from airtrain.invariants import main as check

    argv = sys.argv[1:] if argv is None else argv
    commands = {"migrate": main, "create-reader-login": _reader_login, "resign-artifacts": resign, "check": check}
    if not argv or argv[0] not in commands:
        print(f"usage: airtrain {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


def resign(argv: list[str] | None = None) -> int:
    """``airtrain resign-artifacts``: sign every model version with the newest key in
    ``$AIRTRAIN_ARTIFACT_SECRET_KEYS`` (enabling signing on an existing warehouse, or retiring a key)."""
    from airtrain.artifacts import ArtifactSignatureError
    from airtrain.db import Warehouse
    from airtrain.registry import resign_artifacts
    from airtrain.spec import load_specs

    ap = argparse.ArgumentParser(prog="airtrain resign-artifacts", description="sign the model artifacts with the "
                                 "newest key in $AIRTRAIN_ARTIFACT_SECRET_KEYS (trusts the rows as they are now)")
    ap.add_argument("--url", default=os.environ.get("WAREHOUSE_URL") or os.environ.get("AIRFLOW_CONN_WAREHOUSE"))
    ap.add_argument("--spec-dir", default=None)
    args = ap.parse_args(argv)
    if not args.url:
        print("error: pass --url or set WAREHOUSE_URL", file=sys.stderr)
        return 2
    try:
        for spec in load_specs(Path(args.spec_dir) if args.spec_dir else None):
            print(f"{spec.name}: signed versions {resign_artifacts(Warehouse(args.url), spec)}")
    except ArtifactSignatureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _reader_login(argv: list[str]) -> int:
    from airtrain.schema import main as schema_main

    return schema_main(["create-reader-login", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
