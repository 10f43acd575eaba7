"""Scoring a date, one function per DAG task: ``begin_scoring`` (the champion's target for the date, or
both arms of a running canary), ``score`` (one shard, mapped), ``publish_predictions`` (one swap), and
scoring a champion a person just approved. A date with nothing to score returns ``{"skipped": why}``
(the Airflow task skips with that reason).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from airtrain.data.features import newest_validated_date
from airtrain.registry import champions
from airtrain.serving import canary, publish, scoring
from airtrain.serving.target import NoModelError, ScoringTarget
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse

__all__ = ["NoModelError", "begin_scoring", "newest_validated_date", "publish_predictions", "score_approved",
           "score_date", "score_shard"]


def _target(value: Any) -> ScoringTarget:
    return value if isinstance(value, ScoringTarget) else ScoringTarget.from_dict(dict(value))


def begin_scoring(wh: Warehouse, spec: PipelineSpec, as_of: dt.date | None, *, run_id: str,
                  is_live: Callable[[str], bool]) -> dict[str, Any]:
    """The date's scoring target (a rollback's run without a date scores the newest validated one):
    the champion's for that date, or - while a canary runs - both arms'. Stage tables left by runs that
    are no longer live (``is_live(run_id)``: the orchestrator's answer) are dropped first."""
    if as_of is None:
        as_of = newest_validated_date(wh, spec)
        if as_of is None:
            return {"skipped": "no predictions: no validated partition to score yet"}
    publish.drop_orphan_stages(wh, spec, keep_run=run_id, is_live=is_live)
    try:
        return canary.begin(wh, spec, as_of, run_id=run_id)
    except NoModelError as exc:
        return {"skipped": f"no predictions today: {exc}"}


def score_date(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, run_id: str, model: str | int = "champion",
               role: str = "champion", shards: int = 1) -> dict[str, Any]:
    """begin → every shard → publish in one process (:func:`airtrain.serving.scoring.score_date`)."""
    return scoring.score_date(wh, spec, as_of, run_id=run_id, model=model, role=role, shards=shards)


def score_shard(wh: Warehouse, spec: PipelineSpec, target: Any, *, run_id: str, shard: int,
                shards: int) -> dict[str, Any]:
    """Score one shard of the target into its stage table (both arms of a running canary)."""
    if "canary" in dict(target):
        return canary.score_shard(wh, spec, dict(target), run_id=run_id, shard=shard,
                                  shards=int(dict(target).get("shards") or shards))
    t = _target(target)
    return scoring.score_shard(wh, spec, t, run_id=run_id, shard=shard,
                               shards=t.shards if "shards" in dict(target) else shards)


def publish_predictions(wh: Warehouse, spec: PipelineSpec, target: Any, shard_results: list[dict[str, Any]] | None,
                        *, run_id: str) -> dict[str, Any]:
    """Swap the scored stage table(s) in as the date's partition(s), in one transaction."""
    if isinstance(target, dict) and "canary" in target:  # both arms in one swap
        return canary.publish(wh, spec, target, shard_results, run_id=run_id)
    expected = None if shard_results is None else sum(int(r["rows"]) for r in shard_results)
    return publish.publish(wh, spec, _target(target), expected, run_id=run_id)


def score_approved(wh: Warehouse, spec: PipelineSpec, day: dt.date | None, *, run_id: str,
                   approved: dict[str, Any]) -> dict[str, Any]:
    """After an approved promotion: score the run's date when nobody could score it earlier - there was
    no champion yet (the first model waited for approval). Returns the published partition, or
    ``{"skipped": why}`` when the date already has predictions or the version is not the champion."""
    if day is None:
        return {"skipped": "no date to score: the run has no date"}
    if not approved.get("promoted") or champions.champion_version(wh, spec) != int(approved["version"]):
        return {"skipped": f"v{approved.get('version')} is not the champion: nothing to score"}
    mine = publish.published_by_run(wh, spec, day, run_id)
    if mine is not None:  # a retry after this task's publish committed: announce it again
        return mine
    if publish.is_published(wh, spec, day):
        return {"skipped": f"{day} already has predictions (scored by the champion of the time)"}
    return scoring.score_date(wh, spec, day, run_id=run_id, model=int(approved["version"]))
