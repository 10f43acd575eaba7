"""Releasing a version that passed the gate: at once (the champion), or as a canary first
(``rollout.strategy: canary``) - the start of a canary under the promotion lock, and its graduation or
abort (by the monitor's decision or a person's).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from psycopg2 import sql

from airtrain.faults import failpoint
from airtrain.registry import champions, status
from airtrain.registry.rollouts import (
    ROLLOUT_COLS,
    CanaryError,
    Rollout,
    abort,
    decided_by_run,
    enabled,
    row_to_rollout,
    running,
    salt_for,
)
from airtrain.registry.versions import registry_table
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, registry_lock

log = logging.getLogger(__name__)


def release(wh: Warehouse, spec: PipelineSpec, version: int, *, action: str, actor: str, reason: str, run_id: str,
            metrics: dict[str, Any] | None = None, expected_champion: Any = None, newer_only: bool = False,
            as_of: dt.date | None = None, triggered_by: str | None = None) -> dict[str, Any]:
    """Release a promotable version: with ``rollout.strategy: canary`` (and a champion to compare
    with, and a gate-passed ``promote``) start a canary; otherwise make it the champion at once
    (:func:`airtrain.registry.champions.promote`: a forced promotion or the first model are never canaries)."""

    if expected_champion is None:
        expected_champion = champions.ANY_CHAMPION
    if not (enabled(spec) and action == "promote") or champions.champion_version(wh, spec) is None:
        return champions.promote(wh, spec, version, action=action, actor=actor, reason=reason, run_id=run_id,
                                metrics=metrics, expected_champion=expected_champion, newer_only=newer_only,
                                triggered_by=triggered_by)
    return start(wh, spec, version, actor=actor, reason=reason, run_id=run_id, expected_champion=expected_champion,
                 newer_only=newer_only, as_of=as_of)


def start(wh: Warehouse, spec: PipelineSpec, version: int, *, actor: str, reason: str, run_id: str,
          expected_champion: Any, newer_only: bool, as_of: dt.date | None) -> dict[str, Any]:
    """Make ``version`` the canary candidate: one transaction under the promotion lock, a
    compare-and-swap on the champion (like :func:`airtrain.registry.champions.promote`). Returns
    ``{"changed": False, "canary": "started" | "running" | "not_started", ...}``, or ``"refused"``."""

    r = spec.rollout
    with wh.connect() as conn, conn.cursor() as cur:
        registry_lock(cur, "promote", spec.name)
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s FOR UPDATE").format(registry_table(spec, "champions")),
                    (spec.name,))
        row = cur.fetchone()
        current = int(row[0]) if row else None
        base = {"changed": False, "from_version": current, "to_version": version, "promotion_id": None}
        if current == version:
            return base
        if expected_champion is not champions.ANY_CHAMPION and expected_champion != current:
            return {**base, "refused": (
                f"champion changed: the canary of v{version} was decided against {champions._v(expected_champion)}, "
                f"but the champion is {champions._v(current)} now; re-run to decide against it")}
        if newer_only and current is not None:
            why = champions.out_of_order(cur, spec, version, current)
            if why:
                return {**base, "refused": why}
        if newer_only and (found := status.automatic_refusal(cur, spec, version)):  # rejected, or held
            return {**base, "refused": found[1], "refused_kind": found[0]}
        now_running = running(wh, spec, cur)
        if now_running is not None and now_running.candidate_version == version:
            return {**base, "canary": "running", "rollout": now_running.as_dict()}  # a retry: started before
        if now_running is not None:
            note = (f"not started: the canary of v{now_running.candidate_version} (rollout {now_running.id}, since "
                    f"{now_running.started_on}) is still running; decide it first (it graduates or aborts), then "
                    f"re-run to evaluate v{version} against the champion")
            cur.execute(sql.SQL(
                "INSERT INTO {t} (pipeline, candidate_version, champion_version, fraction, salt, started_on, status, "
                "reason, decided_by, run_id) SELECT %s, %s, %s, %s, %s, %s, 'not_started', %s, %s, %s WHERE NOT EXISTS "
                "(SELECT 1 FROM {t} WHERE pipeline = %s AND candidate_version = %s AND status = 'not_started' "
                "AND started_at >= (SELECT started_at FROM {t} WHERE id = %s))").format(t=registry_table(spec, "rollouts")),
                (spec.name, version, current, r.canary_fraction, salt_for(spec, version), as_of, note, actor, run_id,
                 spec.name, version, now_running.id))  # logged once per version while this canary runs
            return {**base, "canary": "not_started", "message": note}
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, candidate_version, champion_version, fraction, salt, started_on, status, reason, "
            "decided_by, run_id) VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s, %s) RETURNING {}").format(
            registry_table(spec, "rollouts"), sql.SQL(ROLLOUT_COLS)),
            (spec.name, version, current, r.canary_fraction, salt_for(spec, version), as_of,
             f"started: {reason}", actor, run_id))
        started = row_to_rollout(cur.fetchone())
        failpoint("promote.before_commit")
    failpoint("promote.after_commit")  # a retry of the promote task finds this canary running: "running"
    log.info("%s: v%s is the canary candidate for %.0f%% of the entities (rollout %s, champion v%s)", spec.name,
             version, 100 * r.canary_fraction, started.id, current)
    return {**base, "canary": "started", "rollout": started.as_dict()}


def graduate(wh: Warehouse, spec: PipelineSpec, rollout: Rollout, *, reason: str, actor: str, run_id: str,
             decided_on: dt.date | None, metrics: dict[str, Any] | None = None,
             effective_on: dt.date | None = None) -> dict[str, Any]:
    """The candidate becomes the champion for every entity: the registry's locked, logged
    compare-and-swap (the champion must still be the one the canary ran against); the rollout row is
    closed in the same transaction. ``effective_on``: the first date it scores alone (default
    ``decided_on``)."""

    res = champions.promote(wh, spec, rollout.candidate_version, action="promote", actor=actor,
                           reason=f"canary graduated: {reason}", run_id=run_id,
                           metrics={"canary": metrics or {}, "rollout_id": rollout.id},
                           expected_champion=rollout.champion_version, canary_decided_on=decided_on,
                           effective_on=effective_on or decided_on)
    if res.get("refused"):
        abort(wh, spec, rollout, reason=f"cannot graduate: {res['refused']}", actor=actor, run_id=run_id,
              decided_on=decided_on, ends_on=effective_on)
        raise CanaryError(f"canary of v{rollout.candidate_version} not graduated: {res['refused']} (aborted)")
    return {"decision": "graduate", "rollout_id": rollout.id, **res}


def decide_manually(wh: Warehouse, spec: PipelineSpec, action: str, *, reason: str, actor: str, run_id: str,
                    on: dt.date | None = None) -> dict[str, Any]:
    """A person graduates or aborts the running canary (run parameter ``canary_action`` with a reason).
    A retry after the decision committed finds the rollout closed by this run and succeeds."""
    if action not in ("graduate", "abort"):
        raise CanaryError(f"canary_action must be 'graduate' or 'abort', not {action!r}")
    rollout = running(wh, spec)
    if rollout is None:
        done = decided_by_run(wh, spec, run_id)
        if done is not None:
            return {"decision": action, "rollout_id": done, "already_decided": True}
        raise CanaryError(f"{spec.name} has no running canary to {action} (see {spec.warehouse.registry_schema}"
                          ".rollouts); nothing was changed")
    why = f"{action} by {actor}: {reason}"
    if action == "graduate":
        return graduate(wh, spec, rollout, reason=why, actor=actor, run_id=run_id, decided_on=on,
                        metrics={"manual": True})
    abort(wh, spec, rollout, reason=why, actor=actor, run_id=run_id, decided_on=on)
    return {"decision": "abort", "rollout_id": rollout.id, "candidate_version": rollout.candidate_version}
