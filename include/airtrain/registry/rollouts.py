"""Canary rollout records (spec key ``rollout.strategy: canary``): one row per canary in
``registry.rollouts``.

Lifecycle: a challenger that passed the gate becomes the *candidate* (``running``;
:func:`airtrain.registry.release.start`, under the promotion lock; at most one runs per pipeline - a
unique partial index - another that passes meanwhile is logged ``not_started``); both arms are scored
(:mod:`airtrain.serving.canary`, arms by :mod:`airtrain.serving.arms`); the monitor decides
(:mod:`airtrain.monitoring.canary`) and the candidate graduates through the champions' compare-and-swap
(:func:`airtrain.registry.release.graduate`) or is aborted (:func:`abort`). Any champion change closes
a running canary in its own transaction (:func:`close_on_champion_change`, called by
:func:`airtrain.registry.champions.promote`): that is why the records live in the registry.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from airtrain.errors import PermanentError
from airtrain.registry.versions import registry_table
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, registry_lock

log = logging.getLogger(__name__)


class CanaryError(PermanentError, RuntimeError):
    """A canary operation was refused (no canary running, a stale decision, ...)."""


@dataclass(frozen=True)
class Rollout:
    id: int
    pipeline: str
    candidate_version: int
    champion_version: int | None
    fraction: float
    salt: str
    started_on: dt.date | None
    status: str
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_on"] = self.started_on.isoformat() if self.started_on else None
        return d


def enabled(spec: PipelineSpec) -> bool:
    return spec.rollout.strategy == "canary"


# ---------------------------------------------------------------------------------------------
# arm assignment
# ---------------------------------------------------------------------------------------------


def salt_for(spec: PipelineSpec, candidate_version: int) -> str:
    """The rollout's salt: per pipeline and candidate, so each canary draws its own entities."""
    return f"{spec.name}/v{int(candidate_version)}"


# ---------------------------------------------------------------------------------------------
# registry.rollouts
# ---------------------------------------------------------------------------------------------

ROLLOUT_COLS = "id, pipeline, candidate_version, champion_version, fraction, salt, started_on, status, run_id"


def row_to_rollout(r: tuple[Any, ...]) -> Rollout:
    return Rollout(int(r[0]), r[1], int(r[2]), None if r[3] is None else int(r[3]), float(r[4]), r[5], r[6], r[7],
                   r[8])


def running(wh: Warehouse, spec: PipelineSpec, cur: Any = None) -> Rollout | None:
    """The pipeline's running canary, or None."""
    q = sql.SQL("SELECT {} FROM {} WHERE pipeline = %s AND status = 'running'").format(
        sql.SQL(ROLLOUT_COLS), registry_table(spec, "rollouts"))
    if cur is not None:
        cur.execute(q, (spec.name,))
        r = cur.fetchone()
        return row_to_rollout(r) if r else None
    with wh.connect() as conn, conn.cursor() as c:
        c.execute(q, (spec.name,))
        r = c.fetchone()
    return row_to_rollout(r) if r else None


def in_force(wh: Warehouse, spec: PipelineSpec, day: dt.date) -> Rollout | None:
    """The canary that scores partition ``day``: the running one if ``day`` is not before its start, or a
    decided one whose ``started_on <= day < ends_on`` (a re-run of a date the canary scored gives it its
    arms again: point in time, not "whatever runs now"). The newest such rollout when test-made ones overlap."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT {} FROM {} WHERE pipeline = %s AND status IN ('running', 'graduated', 'aborted') "
            "AND COALESCE(started_on, '-infinity'::date) <= %s "
            "AND (status = 'running' OR %s < COALESCE(ends_on, decided_on + 1)) ORDER BY id DESC LIMIT 1").format(
            sql.SQL(ROLLOUT_COLS), registry_table(spec, "rollouts")), (spec.name, day, day))
        r = cur.fetchone()
    return row_to_rollout(r) if r else None


def list_rollouts(wh: Warehouse, spec: PipelineSpec, limit: int = 20) -> list[dict[str, Any]]:
    """The newest rollouts, running ones first (UI page, readers)."""
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL(
                "SELECT id, candidate_version, champion_version, fraction, salt, started_on, status, decided_on, "
                "reason, decided_by, run_id, decided_run_id FROM {} WHERE pipeline = %s "
                "ORDER BY status = 'running' DESC, id DESC LIMIT %s").format(registry_table(spec, "rollouts")), (spec.name, limit))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    except psycopg2.errors.UndefinedTable:
        return []


def close_on_champion_change(cur: Any, spec: PipelineSpec, *, new_champion: int, action: str, actor: str,
                             reason: str, run_id: str, promotion_id: int, decided_on: dt.date | None = None) -> None:
    """Inside :func:`airtrain.registry.champions.promote`'s transaction: a running canary is graduated when its
    candidate became the champion, aborted when any other version did (a forced promotion, a rollback)."""
    cur.execute("SELECT to_regclass(%s)", (f'"{spec.warehouse.registry_schema}"."rollouts"',))
    if cur.fetchone()[0] is None:
        return
    cur.execute(sql.SQL(
        "UPDATE {} SET status = CASE WHEN candidate_version = %s THEN 'graduated' ELSE 'aborted' END, "
        "reason = CASE WHEN candidate_version = %s THEN %s ELSE %s END, decided_by = %s, decided_run_id = %s, "
        "decided_at = now(), decided_on = COALESCE(%s, current_date), promotion_id = %s, "
        "ends_on = (SELECT effective_on FROM {} WHERE id = %s) "
        "WHERE pipeline = %s AND status = 'running'").format(registry_table(spec, "rollouts"),
                                                            registry_table(spec, "promotion_log")),
        (new_champion, new_champion, reason, f"aborted: v{new_champion} was made the champion by {action} ({reason})",
         actor, run_id, decided_on, promotion_id, promotion_id, spec.name))


def abort(wh: Warehouse, spec: PipelineSpec, rollout: Rollout, *, reason: str, actor: str, run_id: str,
          decided_on: dt.date | None, ends_on: dt.date | None = None) -> bool:
    """Retire the candidate (the champion keeps every entity). Returns whether this call closed it.
    ``ends_on``: the first date the arms no longer score (default ``decided_on``: a person's decision in
    the run of that date, which scores it with the champion alone; the monitor passes the next day)."""
    with wh.connect() as conn, conn.cursor() as cur:
        registry_lock(cur, "promote", spec.name)
        cur.execute(sql.SQL(
            "UPDATE {} SET status = 'aborted', reason = %s, decided_by = %s, decided_run_id = %s, decided_at = now(), "
            "decided_on = COALESCE(%s, current_date), ends_on = COALESCE(%s, %s, current_date) "
            "WHERE id = %s AND status = 'running'").format(registry_table(spec, "rollouts")),
            (f"aborted: {reason}", actor, run_id, decided_on, ends_on, decided_on, rollout.id))
        return cur.rowcount == 1


def unalerted_aborts(wh: Warehouse, spec: PipelineSpec) -> list[dict[str, Any]]:
    """Aborted canaries whose alert was not sent yet (an alert is recorded only after it went out)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, candidate_version, champion_version, reason, decided_by, decided_on FROM {} "
                            "WHERE pipeline = %s AND status = 'aborted' AND alerted_at IS NULL ORDER BY id").format(
            registry_table(spec, "rollouts")), (spec.name,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def mark_alerted(wh: Warehouse, spec: PipelineSpec, rollout_id: int) -> None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET alerted_at = now() WHERE id = %s").format(registry_table(spec, "rollouts")),
                    (rollout_id,))


def decided_by_run(wh: Warehouse, spec: PipelineSpec, run_id: str) -> int | None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id FROM {} WHERE pipeline = %s AND decided_run_id = %s ORDER BY id DESC LIMIT 1"
                            ).format(registry_table(spec, "rollouts")), (spec.name, run_id))
        r = cur.fetchone()
    return int(r[0]) if r else None


# ---------------------------------------------------------------------------------------------
# the decision: bootstrap confidence interval of the improvement
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# scoring both arms (the DAG's begin_scoring → score (mapped) → publish_predictions)
# ---------------------------------------------------------------------------------------------
