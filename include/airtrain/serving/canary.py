"""Scoring both arms of a running canary (the DAG's begin_scoring → score (mapped) → publish_predictions):
the champion arm and the candidate arm each into their own stage table, published in ONE swap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from psycopg2 import sql

from airtrain.registry import champions
from airtrain.registry.rollouts import CanaryError, enabled, in_force
from airtrain.serving import scoring
from airtrain.serving.publish import publish as publish_date
from airtrain.serving.target import ScoringTarget
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def begin(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, run_id: str) -> dict[str, Any]:
    """The date's scoring target: the champion's for that date (as :func:`airtrain.serving.scoring.begin`), or -
    for a date the canary in force on it scores (:func:`airtrain.registry.rollouts.in_force`: the running
    one from its start, a decided one up to its ``ends_on``) - the champion arm's, carrying the candidate
    arm's target under ``"canary"``. So a re-run of a date gives the arms that date had, whatever runs now;
    a date before a canary started (a backfill) or after it ended is scored by its champion alone."""
    rollout = in_force(wh, spec, as_of) if enabled(spec) else None
    if rollout is None:
        return scoring.begin(wh, spec, as_of, "champion", run_id=run_id).as_dict()
    champion = champions.champion_as_of(wh, spec, as_of)
    if champion != rollout.champion_version and rollout.status != "running":
        # a decided canary overtaken on this date by a later champion change effective on it (a rollback
        # or a forced promotion for an earlier date): the registry's champion of the date scores it alone
        return scoring.begin(wh, spec, as_of, "champion", run_id=run_id).as_dict()
    if champion != rollout.champion_version:
        raise CanaryError(f"rollout {rollout.id} runs against v{rollout.champion_version} but the champion is "
                          f"v{champion}; abort it (canary_action: abort) - nothing was scored")
    arm = {"salt": rollout.salt, "fraction": rollout.fraction}
    main = replace(scoring.begin(wh, spec, as_of, champion, run_id=run_id), arm="champion", **arm)
    cand = replace(scoring.begin(wh, spec, as_of, rollout.candidate_version, run_id=run_id), arm="candidate",
                   shards=main.shards, rows=main.rows, **arm)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN arm SET DEFAULT 'candidate'").format(
            ident(cand.schema, cand.stage)))
    return {**main.as_dict(), "canary": {"rollout_id": rollout.id, "candidate": cand.as_dict()}}


def score_shard(wh: Warehouse, spec: PipelineSpec, target: dict[str, Any], *, run_id: str, shard: int,
                shards: int) -> dict[str, Any]:
    """Score one shard of both arms (each into its own stage table)."""

    out: dict[str, Any] = {"shard": shard, "rows": 0, "arms": {}, "seconds": 0.0}
    for arm, t in (("champion", target), ("candidate", target["canary"]["candidate"])):
        res = scoring.score_shard(wh, spec, ScoringTarget.from_dict(t), run_id=run_id, shard=shard,
                                  shards=shards)
        out["arms"][arm] = int(res["rows"])
        out["rows"] += int(res["rows"])
        out["seconds"] = round(out["seconds"] + float(res["seconds"]), 3)
    return out


def publish(wh: Warehouse, spec: PipelineSpec, target: dict[str, Any], shard_results: list[dict[str, Any]] | None,
            *, run_id: str) -> dict[str, Any]:
    """Both arms' partitions of the date in ONE swap (other versions of the date are dropped)."""

    def expected(arm: str) -> int | None:
        return None if shard_results is None else sum(int(r["arms"][arm]) for r in shard_results)

    main = ScoringTarget.from_dict(target)
    cand = ScoringTarget.from_dict(target["canary"]["candidate"])
    res = publish_date(wh, spec, main, expected("champion"), run_id=run_id,
                          companions=[(cand, expected("candidate"))])
    res["rollout_id"] = target["canary"]["rollout_id"]
    return res
