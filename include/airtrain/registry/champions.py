"""The champion of each pipeline: the live one, the one of a date (point in time), and the one
promotion path - a compare-and-swap in one transaction under an advisory lock, logged once.

Invariants (see docs/RELIABILITY.md):
* exactly one champion per pipeline at all times once a model was promoted (``registry.champions``
  has the pipeline as primary key, so there can never be two; a promotion is one transaction under
  an advisory lock, so readers see the old or the new champion, never none);
* every champion change writes exactly one ``registry.promotion_log`` row, in the same
  transaction; re-running a promotion that already happened changes nothing and logs nothing;
* a running canary is closed in the same transaction (graduated when its candidate became the
  champion, aborted otherwise: :func:`airtrain.registry.rollouts.close_on_champion_change`).
"""

from __future__ import annotations

import json
from typing import Any

from psycopg2 import sql

from airtrain.faults import failpoint
from airtrain.registry.rollouts import close_on_champion_change
from airtrain.registry.status import _status_changes, automatic_refusal
from airtrain.registry.versions import ModelVersion, RegistryError, get_version, registry_table
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, xact_lock

#: ``expected_champion`` default of :func:`promote`: no compare-and-swap (any champion may be replaced)
ANY_CHAMPION = object()


def champion_version(wh: Warehouse, spec: PipelineSpec) -> int | None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s").format(registry_table(spec, "champions")),
                    (spec.name,))
        row = cur.fetchone()
    return int(row[0]) if row else None


#: a version's training as_of from its lineage, as a date (NULL when missing or malformed); ``m`` = model_versions
_LINEAGE_AS_OF = sql.SQL("(CASE WHEN m.lineage->>'as_of' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' "
                         "THEN (m.lineage->>'as_of')::date END)")


def champion_as_of(wh: Warehouse, spec: PipelineSpec, day: Any) -> int | None:
    """The champion *for partition* ``day``: the version of the newest champion change (by log id)
    that is effective on or before ``day`` (``promotion_log.effective_on``; rows logged before that
    column existed count from their version's training as_of). None: no change is effective yet -
    every champion so far was trained on data after ``day``.

    What scores a date and what the monitor checks it against: a re-run or a backfill of an old date
    gets the model that was live for it, whatever was promoted since. For a pipeline that runs its
    dates in order it is the live champion (:func:`champion_version`)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT l.to_version FROM {l} l LEFT JOIN {m} m ON m.pipeline = l.pipeline AND m.version = l.to_version "
            "WHERE l.pipeline = %s AND COALESCE(l.effective_on, {asof}, '-infinity'::date) <= %s "
            "ORDER BY l.id DESC LIMIT 1").format(l=registry_table(spec, "promotion_log"), m=registry_table(spec, "model_versions"),
                                                 asof=_LINEAGE_AS_OF),
            (spec.name, day))
        row = cur.fetchone()
    return int(row[0]) if row else None


def first_effective_on(wh: Warehouse, spec: PipelineSpec) -> Any:
    """The first date any champion change is effective for (None: no champion was ever made)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT min(COALESCE(l.effective_on, {asof}, '-infinity'::date)) FROM {l} l LEFT JOIN {m} m "
            "ON m.pipeline = l.pipeline AND m.version = l.to_version WHERE l.pipeline = %s").format(
            l=registry_table(spec, "promotion_log"), m=registry_table(spec, "model_versions"), asof=_LINEAGE_AS_OF), (spec.name,))
        row = cur.fetchone()
    return row[0] if row else None


def get_champion(wh: Warehouse, spec: PipelineSpec) -> ModelVersion | None:
    v = champion_version(wh, spec)
    return get_version(wh, spec, v) if v is not None else None


def promote(
    wh: Warehouse,
    spec: PipelineSpec,
    version: int,
    *,
    action: str,
    actor: str,
    reason: str,
    run_id: str,
    metrics: dict[str, Any] | None = None,
    expected_champion: int | None | object = ANY_CHAMPION,
    newer_only: bool = False,
    canary_decided_on: Any = None,
    triggered_by: str | None = None,
    effective_on: Any = None,
) -> dict[str, Any]:
    """Make ``version`` the champion: one transaction under an advisory lock, logged once - a
    compare-and-swap.

    Returns ``{"changed": bool, "from_version": int | None, "to_version": int, "promotion_id": ...}``,
    plus ``"refused": <reason>`` when the swap was refused. Promoting the version that already is
    the champion changes nothing (safe to retry: checked first). Then, under the lock, against the
    champion read in this transaction:

    * ``expected_champion`` (the champion the decision was made against: the one the challenger
      was evaluated against, or the one a rollback was planned against; ``None`` = no champion)
      must still be the champion, else the swap is refused - the decision is stale;
    * ``newer_only``: a version trained as of an earlier date than the champion is refused (an
      out-of-order backfill never replaces a newer champion), and so is a version rejected by a
      rollback or any version while automatic promotions are held (:func:`automatic_refusal`;
      ``"refused_kind"`` says which).

    ``actor`` made the change (``airtrain:gate`` for an automatic promotion, ``user:<name>`` for a
    person's); ``triggered_by`` is who or what started the run (``promotion_log.triggered_by``). A
    rollback marks the version rolled back from ``rejected``; a rollback to, or a forced promotion
    of, a rejected version clears its rejection - both in this transaction (:func:`_status_changes`).

    A running canary (``registry.rollouts``) is closed in the same transaction: graduated when its
    candidate became the champion, aborted otherwise (:func:`airtrain.registry.rollouts.close_on_champion_change`;
    ``canary_decided_on`` is the date the decision is recorded for).

    ``effective_on``: the first partition date the change is for (:func:`champion_as_of`) - the run's
    date for a rollback, the day after the decision for a canary the monitor graduated; default the
    version's training as_of (a promotion: it scores the dates from the one it was trained as of).
    """
    if action not in {"promote", "force_promote", "rollback"}:
        raise ValueError(f"unknown promotion action {action!r}")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "promote", spec.name)
        cur.execute(sql.SQL("SELECT 1 FROM {} WHERE pipeline = %s AND version = %s").format(
            registry_table(spec, "model_versions")), (spec.name, version))
        if cur.fetchone() is None:
            raise RegistryError(f"{spec.name} has no model version {version}; nothing was changed")
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s FOR UPDATE").format(
            registry_table(spec, "champions")), (spec.name,))
        row = cur.fetchone()
        current = int(row[0]) if row else None
        if current == version:
            return {"changed": False, "from_version": current, "to_version": version, "promotion_id": None}
        refused = None
        if expected_champion is not ANY_CHAMPION and expected_champion != current:
            refused = (f"champion changed: making v{version} the champion was decided against "
                       f"{_v(expected_champion)}, but the champion is {_v(current)} now (changed meanwhile by "
                       f"another run); v{version} was not made the champion - re-run to decide against "
                       f"{_v(current)}")
        elif newer_only and current is not None:
            refused = out_of_order(cur, spec, version, current)
        kind = None
        if not refused and newer_only and (found := automatic_refusal(cur, spec, version)):
            kind, refused = found
        if refused:
            return {"changed": False, "from_version": current, "to_version": version, "promotion_id": None,
                    "refused": refused, **({"refused_kind": kind} if kind else {})}
        cur.execute(
            sql.SQL("INSERT INTO {} (pipeline, from_version, to_version, action, actor, reason, metrics, run_id, "
                    "triggered_by, effective_on) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, COALESCE(%s::date, "
                    "(SELECT {} FROM {} m WHERE m.pipeline = %s AND m.version = %s))) RETURNING id").format(
                registry_table(spec, "promotion_log"), _LINEAGE_AS_OF, registry_table(spec, "model_versions")),
            (spec.name, current, version, action, actor, reason, json.dumps(metrics or {}, default=str), run_id,
             triggered_by, effective_on, spec.name, version),
        )
        promotion_id = int(cur.fetchone()[0])
        _status_changes(cur, spec, action=action, from_version=current, to_version=version, actor=actor,
                        reason=reason, run_id=run_id, promotion_id=promotion_id)
        cur.execute(
            sql.SQL("INSERT INTO {} (pipeline, version, promoted_at, promotion_id) VALUES (%s, %s, now(), %s) "
                    "ON CONFLICT (pipeline) DO UPDATE SET version = EXCLUDED.version, "
                    "promoted_at = EXCLUDED.promoted_at, promotion_id = EXCLUDED.promotion_id"
                    ).format(registry_table(spec, "champions")),
            (spec.name, version, promotion_id),
        )

        close_on_champion_change(cur, spec, new_champion=version, action=action, actor=actor, reason=reason,
                                 run_id=run_id, promotion_id=promotion_id, decided_on=canary_decided_on)
        failpoint(f"{_step(action)}.before_commit")
    failpoint(f"{_step(action)}.after_commit")
    return {"changed": True, "from_version": current, "to_version": version, "promotion_id": promotion_id}


def _v(version: Any) -> str:
    return "no champion" if version is None else f"v{version}"


def out_of_order(cur: Any, spec: PipelineSpec, version: int, champion: int) -> str | None:
    """Why ``version`` must not replace ``champion`` automatically: it was trained as of an earlier
    date (an out-of-order backfill) - or None. Runs on the caller's cursor (inside its transaction)."""
    cur.execute(sql.SQL("SELECT version, lineage->>'as_of' FROM {} WHERE pipeline = %s AND version IN (%s, %s)"
                        ).format(registry_table(spec, "model_versions")), (spec.name, version, champion))
    as_of = dict(cur.fetchall())
    mine, theirs = as_of.get(version), as_of.get(champion)
    if mine and theirs and str(mine) < str(theirs):
        return (f"out of order: trained as of {mine}, older than the champion v{champion} (as of {theirs}); an "
                "out-of-order backfill never replaces a newer champion (force_promote with a reason to override)")
    return None


def _step(action: str) -> str:
    """The failpoint prefix of a champion change (a rollback is its own step in the DAG)."""
    return "rollback" if action == "rollback" else "promote"


def promotion_log(wh: Warehouse, spec: PipelineSpec) -> list[dict[str, Any]]:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT id, from_version, to_version, action, actor, reason, run_id, created_at, effective_on "
                    "FROM {} WHERE pipeline = %s ORDER BY id").format(registry_table(spec, "promotion_log")), (spec.name,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------------------------
# Rejected versions, promotion holds and per-run gate decisions (issue 20 items 5, 6, 8)
# ---------------------------------------------------------------------------------------------
