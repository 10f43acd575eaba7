"""Releasing a trained challenger, one function per DAG task: the promotion gate (and what it decided, on
the version and in ``registry.gate_decisions``), the release - at once, as a canary, or after a
person's approval - and rollbacks; each rebuilds the model cards it changed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from airtrain.data import features
from airtrain.model.gate import decide, fairness_checks, refused, with_checks
from airtrain.registry import approvals, cards, champions, release, status, versions
from airtrain.serving.can_score import require_can_score, score_problems
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse

log = logging.getLogger(__name__)


def promote(wh: Warehouse, spec: PipelineSpec, evaluation: dict[str, Any], *, run_id: str, actor: str,
            force: bool = False, reason: str | None = None, dry_run: bool = False,
            approval_required: bool = False, as_of: dt.date | None = None) -> dict[str, Any]:
    """Apply the promotion gate; promote (one transaction, logged) when it passes or is forced -
    with ``rollout.strategy: canary`` a passed challenger becomes the canary candidate instead
    (:func:`airtrain.registry.release.release`; ``as_of``: the date its canary starts scoring).

    The decision recorded in ``model_versions.metrics['gate']`` is the real one: an out-of-order
    version, a version rejected by a rollback, or a comparison that could not be made fairly is
    recorded as refused, with the reason; a passed challenger while automatic promotions are held is
    recorded as held. Every run's decision is also its own row of ``registry.gate_decisions``; a run
    that re-derives the version that already is the champion adds its row there and leaves
    ``metrics.gate`` (the decision that promoted it) as it is.

    An automatic promotion is logged with ``actor = airtrain:gate`` and ``triggered_by = actor`` (who
    started the run); a forced one with the person as both."""

    version = int(evaluation["version"])
    comparison = evaluation.get("comparison") or {}
    if evaluation.get("expected_champion") == version and champions.champion_version(wh, spec) == version:
        return _already_champion(wh, spec, version, run_id=run_id, dry_run=dry_run)
    if comparison.get("refused"):
        decision = refused(comparison["refused"])
    else:
        decision = decide(evaluation["challenger"], evaluation.get("champion"), list(spec.promotion.gates),
                          evaluation.get("challenger_compared"), primary=spec.evaluation.primary_metric)
        if spec.fairness is not None and spec.fairness.gates:

            fair = evaluation.get("fairness") or {}
            decision = with_checks(decision, fairness_checks(
                fair.get("challenger"), fair.get("champion"), list(spec.fairness.gates), list(spec.fairness.sensitive),
                fair.get("challenger_compared")), first_model=evaluation.get("champion") is None)
    checks = [_jsonable(c.__dict__ if hasattr(c, "__dict__") else c) for c in decision.checks]
    passed, why_not = decision.passed, decision.reason
    rejected = status.version_rejection(wh, spec, version)
    stale = None if rejected else _older_than_champion(wh, spec, version)
    if rejected:
        passed, why_not = False, status.rejected_reason(spec, version, rejected)
    elif stale:
        passed, why_not = False, stale
    gate = {"passed": passed, "reason": why_not, "run_id": run_id, "checks": checks,
            "compared": comparison.get("compared"), "note": comparison.get("note"),
            "champion_version": evaluation.get("champion_version")}
    if rejected:
        gate.update(refused="rejected", metrics_passed=decision.passed, metrics_reason=decision.reason,
                    rejected=_jsonable({k: rejected[k] for k in ("actor", "reason", "run_id", "created_at")}))
    elif stale:
        gate.update(refused="out_of_order", metrics_passed=decision.passed)
    elif comparison.get("refused"):
        gate["refused"] = "no_fair_comparison"
    _record_gate(wh, spec, version, gate, evaluation, refresh=False)  # the card: once the outcome is known
    out: dict[str, Any] = {"version": version, "gate_passed": passed, "gate_reason": why_not,
                           "checks": checks, "promoted": False, "dry_run": dry_run}
    if dry_run:
        out["message"] = f"dry run: version {version} would {'' if passed else 'not '}be promoted"
        _gate_outcome(wh, spec, version, run_id, "dry run: nothing promoted")
        return out
    if not passed and not force:
        out["message"] = f"version {version} not promoted: {why_not}"
        _gate_outcome(wh, spec, version, run_id, "not promoted")
        log.warning(out["message"])
        return out
    hold = status.promotion_hold(wh, spec)
    if hold is not None and not force:
        # a hold stops automatic promotions (and approval requests, canaries); a person can still force one
        held = status.held_reason(spec, hold)
        _record_gate(wh, spec, version, {**gate, "held": held}, evaluation, outcome=f"held: {held}")
        out.update(held=True, message=f"version {version} passed the gate but is not promoted: {held}")
        log.warning(out["message"])
        return out
    if approval_required and passed and not force:
        # promotion.approval: required - a person decides (airtrain.registry.approvals.promote_approved)
        out.update(awaiting_approval=True, champion_version=evaluation.get("champion_version"),
                   message=f"version {version} passed the gate and waits for approval")
        _gate_outcome(wh, spec, version, run_id, "awaiting approval")
        log.info(out["message"])
        return out
    # forced: the gate refused it, or automatic promotions are held - a person decided, with a reason
    forced = force and (not passed or hold is not None)
    action = "force_promote" if forced else "promote"
    why = f"forced by {actor}: {reason} (gate: {why_not})" if forced else why_not
    # compare-and-swap: under the lock, the champion must still be the one this challenger was
    # evaluated against, and (unless forced) the challenger must not be older than it, rejected or held

    res = release.release(wh, spec, version, action=action, actor=actor if forced else status.GATE_ACTOR,
                         reason=why, run_id=run_id,
                         metrics={"challenger": evaluation["challenger"], "champion": evaluation.get("champion"),
                                  "checks": checks, "compared": comparison.get("compared")},
                         expected_champion=evaluation.get("expected_champion", champions.ANY_CHAMPION),
                         newer_only=not forced, as_of=as_of, triggered_by=actor)
    if res.get("refused"):
        kind = res.get("refused_kind") or (
            "champion_changed" if res["refused"].startswith("champion changed") else "out_of_order")
        _record_gate(wh, spec, version, {**gate, "passed": False, "reason": res["refused"], "refused": kind,
                                         "metrics_passed": decision.passed}, evaluation,
                     outcome=f"not promoted: {kind}")
        out.update(gate_passed=False, gate_reason=res["refused"], refused=kind,
                   message=f"version {version} not promoted: {res['refused']}")
        log.warning(out["message"])
        return out
    if res.get("canary"):
        _gate_outcome(wh, spec, version, run_id, f"canary {res['canary']}")
        return _canary_outcome(wh, spec, version, out, res)
    out.update(promoted=True, action=action, **res,
               message=f"version {version} is the champion ({action})")
    status.record_gate_outcome(wh, spec, run_id=run_id, version=version, outcome=f"promoted ({action})")
    _refresh_card(wh, spec, version)
    if res.get("from_version") not in (None, version):
        _refresh_card(wh, spec, int(res["from_version"]))  # no longer the champion
    log.info(out["message"])
    return out


def _record_gate(wh: Warehouse, spec: PipelineSpec, version: int, gate: dict[str, Any], evaluation: dict[str, Any],
                 outcome: str | None = None, refresh: bool = True) -> None:
    """The run's decision: ``metrics.gate`` (the newest decision on the version), its own row of
    ``registry.gate_decisions``, and the card rebuilt to show it."""
    versions.update_metrics(wh, spec, version, {"gate": gate})
    status.record_gate_decision(wh, spec, version, gate, run_id=gate["run_id"],
                                  champion_version=evaluation.get("champion_version"), outcome=outcome)
    if refresh:
        _refresh_card(wh, spec, version)


def _gate_outcome(wh: Warehouse, spec: PipelineSpec, version: int, run_id: str, outcome: str) -> None:
    """What became of the run's gate decision; the card rebuilt to show it."""
    status.record_gate_outcome(wh, spec, run_id=run_id, version=version, outcome=outcome)
    _refresh_card(wh, spec, version)


def _already_champion(wh: Warehouse, spec: PipelineSpec, version: int, *, run_id: str, dry_run: bool
                      ) -> dict[str, Any]:
    """A run that re-derived the champion itself (same data, parameters and code): there is nothing to
    decide. Its own ``registry.gate_decisions`` row says so; ``metrics.gate`` keeps the decision that
    promoted it (it is never rewritten into a "first model" decision that contradicts the log)."""
    since = next((p for p in reversed(champions.promotion_log(wh, spec)) if p["to_version"] == version), None)
    how = (f" since {str(since['created_at'])[:16]} ({since['action']} by {since['actor']})" if since else "")
    reason = (f"v{version} is already the champion{how}; this run re-derived it (same data, parameters and code), so "
              "there is nothing to decide: the decision that promoted it stands")
    gate = {"passed": None, "reason": reason, "run_id": run_id, "checks": [], "already_champion": True}
    status.record_gate_decision(wh, spec, version, gate, run_id=run_id, champion_version=version,
                                  outcome="already the champion")
    _refresh_card(wh, spec, version)
    log.info("%s: %s", spec.name, reason)
    return {"version": version, "gate_passed": None, "gate_reason": reason, "checks": [], "promoted": False,
            "already_champion": True, "dry_run": dry_run, "message": reason}


def _canary_outcome(wh: Warehouse, spec: PipelineSpec, version: int, out: dict[str, Any], res: dict[str, Any]
                    ) -> dict[str, Any]:
    """The promote step's answer when the passed challenger went to a canary (started, or not
    started because another canary runs); recorded on the version (``metrics.rollout``)."""
    state = res["canary"]
    rollout = res.get("rollout") or {}
    if state == "not_started":
        msg = f"version {version} passed the gate but its canary was {res['message']}"
    else:
        msg = (f"version {version} is the canary candidate for {100 * float(rollout.get('fraction', 0)):.0f}% of the "
               f"entities (rollout {rollout.get('id')}, champion v{rollout.get('champion_version')})")
    versions.update_metrics(wh, spec, version, {"rollout": {"state": state, "rollout_id": rollout.get("id"),
                                                            "message": msg}})
    out.update(promoted=False, canary=state, rollout=rollout, message=msg)
    log.info(msg)
    return out


def _refresh_card(wh: Warehouse, spec: PipelineSpec, version: int) -> None:
    """Rebuild the version's model card (registry.model_cards) after a step changed what it says."""
    cards.refresh(wh, spec, version)


def _older_than_champion(wh: Warehouse, spec: PipelineSpec, version: int) -> str | None:
    """Why ``version`` must not replace the champion automatically: it was trained as of an earlier
    date (an out-of-order backfill) - or None."""
    champion = champions.champion_version(wh, spec)
    if champion is None or champion == version:
        return None
    with wh.connect() as conn, conn.cursor() as cur:
        return champions.out_of_order(cur, spec, version, champion)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def rollback(wh: Warehouse, spec: PipelineSpec, version: int, *, run_id: str, actor: str, reason: str,
             expected_champion: int | None | object = champions.ANY_CHAMPION,
             as_of: dt.date | None = None) -> dict[str, Any]:
    """Make an earlier version the champion again (logged as a rollback). The version rolled back
    from is marked rejected in the same transaction (``registry.version_status``: who, when, why): the
    gate refuses it from now on, also when a retrain reproduces it, until ``force_promote`` (or a
    rollback to it) brings it back.

    A compare-and-swap like a promotion: ``expected_champion`` is the champion when the rollback
    was asked for (the run's plan); if another run changed it meanwhile, the rollback is refused
    (:class:`registry.RegistryError`, the reason stored in the version's ``metrics.rollback``).
    A version that cannot score under the current spec (a model input removed from it, or without
    values on ``as_of``, the date it re-scores: default the newest validated one) is refused before
    the champion changes (:class:`airtrain.serving.can_score.VersionCannotScoreError`). The rollback is effective
    for ``as_of`` and every later date (``registry.champion_as_of``)."""

    target = versions.get_version(wh, spec, version)
    versions.load_artifact(wh, spec, version)  # refuse a version whose artifact is damaged
    require_can_score(wh, spec, version, as_of, what=f"the rollback to v{version}")
    res = champions.promote(wh, spec, target.version, action="rollback", actor=actor,
                           reason=f"rollback by {actor}: {reason}", run_id=run_id,
                           metrics={"metrics": target.metrics.get("holdout", {})},
                           expected_champion=expected_champion, triggered_by=actor,
                           effective_on=as_of or features.newest_validated_date(wh, spec))
    if res.get("refused"):
        versions.update_metrics(wh, spec, version, {"rollback": {"refused": res["refused"], "run_id": run_id,
                                                                 "actor": actor}})
        raise versions.RegistryError(f"rollback to v{version} refused: {res['refused']}")
    # the version rolled back from is rejected now (registry.version_status): its card says so
    for v in {version, res.get("from_version")} - {None}:
        _refresh_card(wh, spec, int(v))
    return {"action": "rollback", **res}


#: ``expected_champion`` of a rollback planned against no particular champion (no compare-and-swap)
ANY_CHAMPION = champions.ANY_CHAMPION


def rollback_expectation(wh: Warehouse, spec: PipelineSpec, version: int) -> tuple[dict[str, Any], list[str]]:
    """The champion a rollback to ``version`` is planned against (``expected_champion``: the rollback is a
    compare-and-swap on it), or why it is refused (an unknown version)."""
    try:
        versions.get_version(wh, spec, version)
    except versions.RegistryError as exc:
        return {}, [str(exc)]
    return {"expected_champion": champions.champion_version(wh, spec)}, []


def rollback_problems(wh: Warehouse, spec: PipelineSpec, version: int, as_of: dt.date | None) -> list[str]:
    """Why ``version`` cannot score under the current spec on ``as_of`` (the run's parameter check)."""
    return [f"rollback_version {version} cannot score under the current spec: {why}"
            for why in score_problems(wh, spec, version, as_of)]


def approval_request(wh: Warehouse, spec: PipelineSpec, run_id: str, evaluation: dict[str, Any],
                     promotion: dict[str, Any], links: dict[str, str]) -> str:
    """The Markdown shown to the approver: metrics against the champion, the gate's checks, the primary
    metric per slice, links to the reports."""
    gate = {"passed": promotion.get("gate_passed"), "checks": promotion.get("checks", [])}
    return approvals.approval_body(spec, evaluation, gate, approvals.slice_metrics(wh, spec, run_id), links)


def decision_from_response(chosen: list[str], responded_by: dict[str, Any] | None,
                           params_input: dict[str, Any] | None) -> dict[str, Any]:
    """approved / rejected / timed_out from a human-in-the-loop response."""
    return approvals.decision_from_response(chosen, responded_by, params_input)


def record_approval(wh: Warehouse, spec: PipelineSpec, *, run_id: str, version: int, champion_version: int | None,
                    decision: dict[str, Any], responded_at: Any = None) -> None:
    """Store a person's answer (or the timeout) to a promotion request in ``registry.approvals``."""
    approvals.record_decision(wh, spec, run_id=run_id, version=version, champion_version=champion_version,
                              decision=decision, responded_at=responded_at)


def promote_approved(wh: Warehouse, spec: PipelineSpec, promotion: dict[str, Any], evaluation: dict[str, Any], *,
                     run_id: str, approver: str, comment: str | None, as_of: dt.date | None = None,
                     triggered_by: str | None = None) -> dict[str, Any]:
    """Promote the challenger a person approved (the same locked, logged path; approver and comment logged)."""
    return approvals.promote_approved(wh, spec, promotion, evaluation, run_id=run_id, approver=approver,
                                      comment=comment, as_of=as_of, triggered_by=triggered_by)


def promotion_hold(wh: Warehouse, spec: PipelineSpec, action: str, *, actor: str, reason: str,
                   run_id: str) -> dict[str, Any]:
    """Hold or release automatic promotions of the pipeline (``registry.promotion_holds``)."""
    return status.set_promotion_hold(wh, spec, action, actor=actor, reason=reason, run_id=run_id)


def decide_canary(wh: Warehouse, spec: PipelineSpec, action: str, *, reason: str, actor: str, run_id: str,
                  on: dt.date | None = None) -> dict[str, Any]:
    """A person graduates or aborts the running canary (``canary_action`` with a reason)."""
    return release.decide_manually(wh, spec, action, reason=reason, actor=actor, run_id=run_id, on=on)
