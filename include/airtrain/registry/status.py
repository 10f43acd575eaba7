"""What stands in the way of an automatic promotion, and what each run decided: versions rejected by a
rollback (``registry.version_status``, append-only), holds of automatic promotions
(``registry.promotion_holds``, append-only) and every run's gate decision (``registry.gate_decisions``).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from airtrain.registry.versions import registry_table
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, xact_lock

#: the actor of an automatic promotion: the gate decided (who started the run is ``triggered_by``)
GATE_ACTOR = "airtrain:gate"


def _one(cur: Any, query: sql.Composable, params: tuple) -> dict[str, Any] | None:
    cur.execute(query, params)
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None


def rejection(cur: Any, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """The standing rejection of ``version`` (its newest ``registry.version_status`` row says
    ``rejected``: who, when, why, which run and promotion), or None. On the caller's cursor."""
    row = _one(cur, sql.SQL("SELECT status, actor, reason, run_id, promotion_id, created_at FROM {} "
                            "WHERE pipeline = %s AND version = %s ORDER BY id DESC LIMIT 1").format(
        registry_table(spec, "version_status")), (spec.name, version))
    return row if row and row["status"] == "rejected" else None


def version_rejection(wh: Warehouse, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """:func:`rejection` in its own transaction."""
    with wh.connect() as conn, conn.cursor() as cur:
        return rejection(cur, spec, version)


def rejected_reason(spec: PipelineSpec, version: int, rej: dict[str, Any]) -> str:
    when = str(rej.get("created_at") or "")[:16]
    return (f"v{version} was rejected by {rej['actor']} on {when} ({rej['reason']}); it is not promoted again "
            f"automatically, also when a retrain reproduces it (same data, parameters and code) - force_promote "
            f"with a reason brings it back")


def hold_state(cur: Any, spec: PipelineSpec) -> dict[str, Any] | None:
    """The standing hold on automatic promotions of the pipeline (its newest ``registry.promotion_holds``
    row is ``hold``: who, since when, why), or None. On the caller's cursor."""
    row = _one(cur, sql.SQL("SELECT id, action, actor, reason, run_id, created_at FROM {} WHERE pipeline = %s "
                            "ORDER BY id DESC LIMIT 1").format(registry_table(spec, "promotion_holds")), (spec.name,))
    return row if row and row["action"] == "hold" else None


def promotion_hold(wh: Warehouse, spec: PipelineSpec) -> dict[str, Any] | None:
    """:func:`hold_state` in its own transaction (None also before the table exists)."""
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            return hold_state(cur, spec)
    except psycopg2.errors.UndefinedTable:
        return None


def held_reason(spec: PipelineSpec, hold: dict[str, Any]) -> str:
    since = str(hold.get("created_at") or "")[:16]
    return (f"automatic promotions of {spec.name} are held since {since} by {hold['actor']} ({hold['reason']}); "
            "release the hold (promotion_hold: release) to promote again, or force_promote with a reason")


def automatic_refusal(cur: Any, spec: PipelineSpec, version: int) -> tuple[str, str] | None:
    """Why ``version`` must not become the champion (or the canary candidate) without a person's
    explicit override: ``("rejected", why)`` - a rollback rejected it - or ``("held", why)`` -
    automatic promotions of the pipeline are held - or None. Runs under the promotion lock."""
    rej = rejection(cur, spec, version)
    if rej is not None:
        return "rejected", rejected_reason(spec, version, rej)
    hold = hold_state(cur, spec)
    if hold is not None:
        return "held", held_reason(spec, hold)
    return None


def _status_changes(cur: Any, spec: PipelineSpec, *, action: str, from_version: int | None, to_version: int,
                    actor: str, reason: str, run_id: str, promotion_id: int) -> None:
    """Inside :func:`promote`'s transaction: a rollback rejects the version rolled back from; a
    rollback to, or a forced promotion of, a rejected version clears the rejection (both logged)."""
    table = registry_table(spec, "version_status")
    insert = sql.SQL("INSERT INTO {} (pipeline, version, status, actor, reason, run_id, promotion_id) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(table)
    if action == "rollback" and from_version is not None and rejection(cur, spec, from_version) is None:
        cur.execute(insert, (spec.name, from_version, "rejected", actor, reason, run_id, promotion_id))
    if action in ("rollback", "force_promote") and rejection(cur, spec, to_version) is not None:
        cur.execute(insert, (spec.name, to_version, "cleared", actor, reason, run_id, promotion_id))


def version_status_log(wh: Warehouse, spec: PipelineSpec, version: int) -> list[dict[str, Any]]:
    """Every status change of ``version`` (rejected / cleared), oldest first."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, status, actor, reason, run_id, promotion_id, created_at FROM {} "
                            "WHERE pipeline = %s AND version = %s ORDER BY id").format(registry_table(spec, "version_status")),
                    (spec.name, version))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def set_promotion_hold(wh: Warehouse, spec: PipelineSpec, action: str, *, actor: str, reason: str,
                       run_id: str) -> dict[str, Any]:
    """Hold (``action="hold"``) or release automatic promotions of the pipeline: one row in the
    append-only ``registry.promotion_holds`` when the state changes, under the promotion lock.

    While held, a challenger that passes the gate is recorded as held and not promoted (nor started
    as a canary, nor sent for approval); ``force_promote`` and ``rollback_version`` still work. A
    retry of the same run finds its own row; asking for the state the pipeline is already in changes
    nothing and says so."""
    if action not in ("hold", "release"):
        raise ValueError(f"unknown promotion hold action {action!r} (hold or release)")
    table = registry_table(spec, "promotion_holds")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "promote", spec.name)
        mine = _one(cur, sql.SQL("SELECT id, action, actor, reason, run_id, created_at FROM {} WHERE pipeline = %s "
                                 "AND run_id = %s ORDER BY id DESC LIMIT 1").format(table), (spec.name, run_id))
        if mine is not None:  # a retry of this run: its change is already committed
            return {"changed": True, "held": mine["action"] == "hold", **_jsonable(mine)}
        current = hold_state(cur, spec)
        if (current is not None) == (action == "hold"):
            state = (f"already held since {str(current['created_at'])[:16]} by {current['actor']} "
                     f"({current['reason']})") if current else "not held"
            return {"changed": False, "held": current is not None,
                    "message": f"automatic promotions of {spec.name} are {state}; nothing changed"}
        row = _one(cur, sql.SQL("INSERT INTO {} (pipeline, action, actor, reason, run_id) VALUES (%s, %s, %s, %s, %s) "
                                "RETURNING id, action, actor, reason, run_id, created_at").format(table),
                   (spec.name, action, actor, reason, run_id))
    what = "held" if action == "hold" else "released: the gate promotes again"
    return {"changed": True, "held": action == "hold", **_jsonable(row),
            "message": f"automatic promotions of {spec.name} {what} (by {actor}: {reason})"}


def promotion_holds(wh: Warehouse, spec: PipelineSpec, limit: int = 20) -> list[dict[str, Any]]:
    """The newest hold / release rows of the pipeline (for the reports page and readers)."""
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT id, action, actor, reason, run_id, created_at FROM {} WHERE pipeline = %s "
                                "ORDER BY id DESC LIMIT %s").format(registry_table(spec, "promotion_holds")), (spec.name, limit))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    except psycopg2.errors.UndefinedTable:
        return []


def record_gate_decision(wh: Warehouse, spec: PipelineSpec, version: int, gate: dict[str, Any], *, run_id: str,
                         champion_version: int | None, outcome: str | None = None) -> None:
    """This run's gate decision on ``version`` as its own row of ``registry.gate_decisions`` (key:
    pipeline, run, version): a later run that re-derives the same version adds its own row instead of
    overwriting this one; a retry of the same run replaces its own."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {} AS g (pipeline, run_id, version, champion_version, passed, refused, outcome, reason, "
            "decision) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (pipeline, run_id, version) DO UPDATE "
            "SET champion_version = EXCLUDED.champion_version, passed = EXCLUDED.passed, refused = EXCLUDED.refused, "
            "outcome = COALESCE(EXCLUDED.outcome, g.outcome), reason = EXCLUDED.reason, "
            "decision = EXCLUDED.decision, updated_at = now()").format(registry_table(spec, "gate_decisions")),
            (spec.name, run_id, version, champion_version, gate.get("passed"), gate.get("refused"), outcome,
             str(gate.get("reason") or ""), json.dumps(gate, default=str)))


def record_gate_outcome(wh: Warehouse, spec: PipelineSpec, *, run_id: str, version: int, outcome: str) -> None:
    """What became of a run's gate decision later (an approval answered, ...)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET outcome = %s, updated_at = now() WHERE pipeline = %s AND run_id = %s "
                            "AND version = %s").format(registry_table(spec, "gate_decisions")), (outcome, spec.name, run_id, version))


def gate_decisions(wh: Warehouse, spec: PipelineSpec, version: int) -> list[dict[str, Any]]:
    """Every run's gate decision on ``version``, oldest first."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT run_id, champion_version, passed, refused, outcome, reason, decision, created_at, "
                            "updated_at FROM {} WHERE pipeline = %s AND version = %s ORDER BY created_at, run_id").format(
            registry_table(spec, "gate_decisions")), (spec.name, version))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any]:
    return json.loads(json.dumps(row or {}, default=str))
