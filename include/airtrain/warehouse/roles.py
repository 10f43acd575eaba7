"""Roles of the warehouse: the read-only reader role (what each package lets it read, and nothing it
can write outside the tables), an analyst's login that inherits it, and the deploy-time roles of a
least-privilege warehouse (the owner of the airtrain objects and the workers' task login).
"""

from __future__ import annotations

from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from airtrain.spec import check_identifier
from airtrain.warehouse.connection import Warehouse, ident, xact_lock


def grant_reader(cur: Any, role: str, schemas: list[str], tables: list[tuple[str, str]]) -> list[str]:
    """The NOLOGIN read-only ``role`` (created when missing) may read every table of ``schemas`` (also
    the ones created later) and the ``(schema, table)`` pairs of ``tables``, and nothing else: it is
    read-only also outside the tables (:func:`harden_reader`). Each package names what its readers need
    (:class:`airtrain.warehouse.ddl.SchemaPart`); returns warnings (what the role can still write)."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(role)))
    for schema in dict.fromkeys(schemas):
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(role)))
        cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident(schema), ident(role)))
        cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            ident(schema), ident(role)))
    for schema, table in dict.fromkeys(tables):
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(role)))
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident(schema, table), ident(role)))
    return harden_reader(cur, role)  # read-only also outside the tables: no temp tables, no large objects


#: PostgreSQL functions every role may run by default that WRITE: large objects (created and owned by
#: the caller, outside any table's grants). A read-only login must not have them.
LARGE_OBJECT_WRITERS = ("lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid, bytea)", "lo_import(text)",
                        "lo_import(text, oid)", "lo_put(oid, bigint, bytea)", "lowrite(integer, bytea)",
                        "lo_truncate(integer, integer)", "lo_truncate64(integer, bigint)")


def reader_write_privileges(cur, role: str) -> list[str]:
    """What ``role`` can still write outside the tables: temporary tables in this database, large
    objects. Empty for a properly read-only role."""
    left = []
    cur.execute("SELECT has_database_privilege(%s, current_database(), 'TEMPORARY')", (role,))
    if cur.fetchone()[0]:
        left.append("TEMPORARY on the database")
    for fn in LARGE_OBJECT_WRITERS:
        cur.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, fn))
        if cur.fetchone()[0]:
            left.append(f"EXECUTE on {fn}")
    return left


def harden_reader(cur, role: str) -> list[str]:
    """Take from a read-only role what every role gets through PUBLIC and it must not have: temporary
    tables (``CREATE TEMP TABLE``) and the large-object functions that write (``lo_create`` ...).
    PostgreSQL has no per-role deny, so both are revoked from PUBLIC and TEMPORARY is granted back
    to the current login (the owner of the airtrain objects; the task login is its member). Other
    roles of this database that need temporary tables or large objects need an explicit GRANT
    (docs/SQL.md "A login for analysts"). Needs the database owner / a superuser: with less, nothing is changed and
    the returned list says what the reader can still do (``airtrain migrate`` prints it)."""
    if not reader_write_privileges(cur, role):
        return []
    cur.execute("SELECT current_database(), current_user")
    db, me = cur.fetchone()
    steps = [[sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(db), sql.Identifier(me)),
              sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db))],
             [sql.SQL("REVOKE EXECUTE ON FUNCTION pg_catalog.{} FROM PUBLIC").format(sql.SQL(fn))
              for fn in LARGE_OBJECT_WRITERS]]
    for statements in steps:  # each on its own: a database owner that is no superuser still takes TEMPORARY
        cur.execute("SAVEPOINT airtrain_harden_reader")
        try:
            for statement in statements:
                cur.execute(statement)
            cur.execute("RELEASE SAVEPOINT airtrain_harden_reader")
        except Exception:  # noqa: BLE001 - not allowed to (not the owner / a superuser): reported below
            cur.execute("ROLLBACK TO SAVEPOINT airtrain_harden_reader")
    left = reader_write_privileges(cur, role)
    return [f"the read-only role {role} can still write: {', '.join(left)}; run `airtrain migrate` once as a "
            "superuser (the database owner can revoke TEMPORARY only), or revoke it from PUBLIC yourself"] if left else []


class ReaderLoginError(RuntimeError):
    """The reader login could not be created (bad name, role exists, no reader role yet)."""


def create_reader_login(wh: Warehouse, name: str, password: str, *, reader_role: str = "predictions_reader",
                        reset_password: bool = False) -> str:
    """Create ``name`` as a LOGIN role that inherits ``reader_role`` (read-only; see :func:`grant_reader`).

    The password is sent as a SCRAM verifier computed here, never as clear text in the SQL. An
    existing role is refused unless ``reset_password`` (then its password is replaced and it is
    (re)granted the reader role). Returns what was done.
    """
    try:
        check_identifier(name)
    except ValueError as exc:
        raise ReaderLoginError(f"login name: {exc}") from None
    if len(password) < 12:
        raise ReaderLoginError("the password must have at least 12 characters")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "schema")
        cur.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (reader_role,))
        if cur.fetchone() is None:
            raise ReaderLoginError(f"role {reader_role!r} does not exist yet: apply the schema first "
                                   "(`python -m airtrain.schema --url ...`, or any retrain run)")
        cur.execute("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = %s", (name,))
        row = cur.fetchone()
        if row is not None and row[0]:
            raise ReaderLoginError(f"{name!r} is a superuser; pick another name for a read-only login")
        if row is not None and not reset_password:
            raise ReaderLoginError(f"role {name!r} exists already; pass --reset-password to give it a new "
                                   "password (it keeps inheriting the reader role)")
        verifier = psycopg2.extensions.encrypt_password(password, name, conn, "scram-sha-256")
        if row is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN INHERIT PASSWORD {}").format(ident(name), sql.Literal(verifier)))
            done = "created"
        else:
            cur.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident(name), sql.Literal(verifier)))
            done = "password reset"
        cur.execute(sql.SQL("GRANT {} TO {}").format(ident(reader_role), ident(name)))
    return done


def setup_roles(wh: Warehouse, *, owner_role: str, task_login: str, task_password: str,
                reader_roles: list[str]) -> list[str]:
    """Deploy-time, as a superuser (compose's ``airflow-init``): the least-privilege roles of a warehouse.

    * ``owner_role`` (NOLOGIN, no attributes) owns the airtrain objects: ``airtrain migrate`` runs as it
      (``options=-c role=<owner_role>``), so do the tasks;
    * ``task_login`` - the workers' login - LOGIN without SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or
      BYPASSRLS, a member of ``owner_role`` whose every session runs as it (``ALTER ROLE ... SET role``:
      the partitions it creates belong to the owner, like the tables migrate creates); it can therefore
      write and swap the pipelines' tables and nothing else: no roles, no databases;
    * the reader roles exist (NOLOGIN) so that migrate, as the owner, only grants to them, and they are
      read-only also outside the tables (:func:`harden_reader`).

    The password is sent as a SCRAM verifier. Idempotent: a second run resets the password and
    attributes. Returns what was done."""
    for name in (owner_role, task_login, *reader_roles):
        check_identifier(name)
    if len(task_password) < 12:
        raise ReaderLoginError("the task login's password must have at least 12 characters")
    done: list[str] = []
    no_attrs = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "schema")
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:
            raise ReaderLoginError("setup-roles needs a superuser login (the warehouse's admin)")
        for role, login in ((owner_role, False), *((r, False) for r in reader_roles), (task_login, True)):
            cur.execute("SELECT rolsuper OR rolname = current_user FROM pg_roles WHERE rolname = %s", (role,))
            row = cur.fetchone()
            if row is not None and row[0]:
                raise ReaderLoginError(f"{role!r} is a superuser (or this login): pick other role names")
            verb = "ALTER" if row else "CREATE"
            cur.execute(sql.SQL("{} ROLE {} {} {} INHERIT").format(
                sql.SQL(verb), ident(role), sql.SQL("LOGIN" if login else "NOLOGIN"), no_attrs))
            done.append(f"{'altered' if row else 'created'} role {role}")
        verifier = psycopg2.extensions.encrypt_password(task_password, task_login, conn, "scram-sha-256")
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident(task_login), sql.Literal(verifier)))
        cur.execute(sql.SQL("GRANT {} TO {}").format(ident(owner_role), ident(task_login)))
        cur.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(ident(task_login), sql.Literal(owner_role)))
        cur.execute("SELECT current_database()")
        db = sql.Identifier(cur.fetchone()[0])
        cur.execute(sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(db, ident(owner_role)))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident(task_login)))
        done.append(f"{task_login}: member of {owner_role} (its sessions run as it), no role attributes")
        for role in reader_roles:
            done += harden_reader(cur, role) or [f"{role}: read-only outside the tables too"]
    return done
