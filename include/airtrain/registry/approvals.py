"""Human approval of a promotion (``promotion.approval: required``): the request body shown to the
approver, the decision log ``registry.approvals``, and applying an approved promotion through the same
locked, logged path as an automatic one (the HITL operator in airtrain_airflow.operators.approval
reaches it through :mod:`airtrain.steps.release`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from airtrain.errors import PermanentError
from airtrain.registry import cards, champions, release, status
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident

# ---------------------------------------------------------------------------------------------
# Assets: the monitor's window from the publish events that triggered it
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Human approval of a promotion
# ---------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(f) else f"{f:.4f}"


def _md(text: Any) -> str:
    """Text for a Markdown table cell (no pipes, no newlines, no HTML tags)."""
    return str(text).replace("|", "/").replace("\n", " ").replace("<", "‹")[:400]


def approval_body(spec: PipelineSpec, evaluation: dict[str, Any], gate: dict[str, Any],
                  slices: list[dict[str, Any]] | None = None, links: dict[str, str] | None = None) -> str:
    """The Markdown body of the approval request: the metrics of the challenger against the champion
    on the same days, the gate's checks, the primary metric per slice and links to the reports."""
    version, champ = evaluation.get("version"), evaluation.get("champion_version")
    challenger = evaluation.get("challenger_compared") or evaluation.get("challenger") or {}
    champion = evaluation.get("champion") or {}
    comp = evaluation.get("comparison") or {}
    lines = [f"**{spec.name}**: promote challenger **v{version}** "
             + (f"over champion **v{champ}**" if champ else "(no champion yet)") + "?", ""]
    if comp.get("compared"):
        lines.append(f"Compared on the same rows: {comp['compared'][0]} … {comp['compared'][1]} "
                     f"({comp.get('rows', 0)} labeled rows, days neither model was trained on).")
    if comp.get("note"):
        lines.append(f"Note: {_md(comp['note'])}")
    lines += ["", "| metric | challenger | champion | change |", "|---|---|---|---|"]
    for m in spec.evaluation.metrics:
        new, old = challenger.get(m), champion.get(m)
        change = "–"
        if new is not None and old is not None:
            d = float(new) - float(old)
            better = (d < 0) if m in LOWER_IS_BETTER else (d > 0)
            change = f"{d:+.4f} ({'better' if better else 'worse' if d else 'same'})"
        lines.append(f"| {m}{' (primary)' if m == spec.evaluation.primary_metric else ''} | {_fmt(new)} | "
                     f"{_fmt(old)} | {change} |")
    lines += ["", f"**Gate: {'passed' if gate.get('passed') else 'failed'}**", ""]
    lines += [f"- {_md(c.get('message', ''))}" for c in gate.get("checks", [])]
    if slices:
        lines += ["", f"**{spec.evaluation.primary_metric} per slice** (same rows)", "",
                  "| slice | challenger | champion | rows |", "|---|---|---|---|"]
        for s in slices[:40]:
            lines.append(f"| {_md(s['slice'])} | {_fmt(s.get('challenger'))} | {_fmt(s.get('champion'))} | "
                         f"{s.get('n_rows', '')} |")
    if links:
        lines += [""] + [f"- [{_md(k)}]({v})" for k, v in links.items()]
    lines += ["", "Approve to make it the champion (the comment goes into `registry.promotion_log`); "
                  "reject to keep the champion. Today's predictions are written by the champion either way."]
    return "\n".join(lines)


def slice_metrics(wh: Warehouse, spec: PipelineSpec, run_id: str) -> list[dict[str, Any]]:
    """The primary metric per slice of the run's evaluation (``registry.evaluations``), both roles."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT slice_column || '=' || slice_value, max(value) FILTER (WHERE role = 'challenger'), "
            "max(value) FILTER (WHERE role = 'champion'), max(n_rows) FROM {} WHERE pipeline = %s AND run_id = %s "
            "AND metric = %s AND slice_column <> '' GROUP BY 1 ORDER BY 1").format(
            ident(spec.warehouse.registry_schema, "evaluations")), (spec.name, run_id, spec.evaluation.primary_metric))
        return [{"slice": r[0], "challenger": r[1], "champion": r[2], "n_rows": r[3]} for r in cur.fetchall()]


def decision_from_response(chosen: list[str], responded_by: dict[str, Any] | None,
                           params_input: dict[str, Any] | None) -> dict[str, Any]:
    """Our decision from a HITL response: approved / rejected, or timed_out when nobody answered
    (the scheduler applied the default, so there is no responder)."""
    comment = str((params_input or {}).get("comment") or "").strip() or None
    if not responded_by:
        return {"decision": "timed_out", "responded_by": None, "comment": None}
    user = str(responded_by.get("name") or responded_by.get("id") or "unknown")
    return {"decision": "approved" if list(chosen) == ["Approve"] else "rejected", "responded_by": user,
            "comment": comment}


def record_decision(wh: Warehouse, spec: PipelineSpec, *, run_id: str, version: int, champion_version: int | None,
                    decision: dict[str, Any], responded_at: Any = None) -> None:
    """Upsert the run's decision into ``registry.approvals`` (a re-run of the run replaces it) and
    note it on the model version (``model_versions.metrics['approval']``)."""
    table = ident(spec.warehouse.registry_schema, "approvals")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, champion_version, decision, responded_by, comment, "
            "responded_at, promoted, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (pipeline, run_id, version) DO UPDATE SET champion_version = EXCLUDED.champion_version, "
            "decision = EXCLUDED.decision, responded_by = EXCLUDED.responded_by, comment = EXCLUDED.comment, "
            "responded_at = EXCLUDED.responded_at, promoted = EXCLUDED.promoted, outcome = EXCLUDED.outcome, "
            "created_at = now()").format(table),
            (spec.name, run_id, version, champion_version, decision["decision"], decision.get("responded_by"),
             decision.get("comment"), responded_at, False if decision["decision"] != "approved" else None,
             _outcome(decision)))
        cur.execute(sql.SQL("UPDATE {} SET metrics = metrics || %s::jsonb WHERE pipeline = %s AND version = %s").format(
            ident(spec.warehouse.registry_schema, "model_versions")),
            (json.dumps({"approval": {**decision, "run_id": run_id}}, default=str), spec.name, version))
        if decision["decision"] != "approved":  # the run's gate decision: what became of it
            cur.execute(sql.SQL("UPDATE {} SET outcome = %s, updated_at = now() WHERE pipeline = %s AND run_id = %s "
                                "AND version = %s").format(ident(spec.warehouse.registry_schema, "gate_decisions")),
                        (_outcome(decision), spec.name, run_id, version))


def _outcome(decision: dict[str, Any]) -> str | None:
    if decision["decision"] == "rejected":
        why = f": {decision['comment']}" if decision.get("comment") else ""
        return f"not promoted: rejected by {decision['responded_by']}{why}"
    if decision["decision"] == "timed_out":
        return "not promoted: nobody answered before promotion.approval_timeout_hours; the champion stays"
    return None


def record_outcome(wh: Warehouse, spec: PipelineSpec, *, run_id: str, version: int, promoted: bool,
                   outcome: str) -> None:
    """After an approved promotion was applied (or refused): what happened."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET promoted = %s, outcome = %s WHERE pipeline = %s AND run_id = %s "
                            "AND version = %s").format(ident(spec.warehouse.registry_schema, "approvals")),
                    (promoted, outcome, spec.name, run_id, version))


def list_approvals(wh: Warehouse, spec: PipelineSpec, limit: int = 30) -> list[dict[str, Any]]:
    """The newest decisions (for the UI page and for readers)."""
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL(
                "SELECT run_id, version, champion_version, decision, responded_by, comment, responded_at, promoted, "
                "outcome FROM {} WHERE pipeline = %s ORDER BY created_at DESC LIMIT %s").format(
                ident(spec.warehouse.registry_schema, "approvals")), (spec.name, limit))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    except psycopg2.errors.UndefinedTable:
        return []


class ApprovalRefused(PermanentError, RuntimeError):
    """An approved promotion that can no longer be applied (the champion changed meanwhile, ...)."""


def promote_approved(wh: Warehouse, spec: PipelineSpec, promotion: dict[str, Any], evaluation: dict[str, Any], *,
                     run_id: str, approver: str, comment: str | None, as_of: dt.date | None = None,
                     triggered_by: str | None = None) -> dict[str, Any]:
    """Apply an approved promotion through the same locked, logged path as an automatic one
    (:func:`airtrain.registry.champions.promote`), with the approver as actor (``user:<approver>``), their
    comment in the reason and ``triggered_by`` (who started the run) beside it.

    Refused (nothing changes, the refusal is recorded in ``registry.approvals``) when the champion is no
    longer the one the gate compared with - another promotion happened while the request waited -,
    when the version was rejected by a rollback or automatic promotions were held meanwhile, or when
    the approved version is already the champion (a retry after the promotion committed is fine).
    Either way the model cards of the version (and of the champion it replaced) are rebuilt."""

    def refresh_cards() -> None:
        for v in {int(promotion["version"]), evaluation.get("champion_version"),
                  champions.champion_version(wh, spec)} - {None}:
            cards.refresh(wh, spec, int(v))

    try:
        out = _promote_approved(wh, spec, promotion, evaluation, run_id=run_id, approver=approver, comment=comment,
                                as_of=as_of, triggered_by=triggered_by)
    except ApprovalRefused:
        refresh_cards()
        raise
    refresh_cards()
    return out


def _promote_approved(wh: Warehouse, spec: PipelineSpec, promotion: dict[str, Any], evaluation: dict[str, Any], *,
                      run_id: str, approver: str, comment: str | None, as_of: dt.date | None,
                      triggered_by: str | None) -> dict[str, Any]:

    version = int(promotion["version"])
    compared_with = evaluation.get("champion_version")
    current = champions.champion_version(wh, spec)
    if current == version:
        record_outcome(wh, spec, run_id=run_id, version=version, promoted=True,
                       outcome=f"promoted: approved by {approver}")
        return {"version": version, "promoted": True, "changed": False, "message": f"v{version} is the champion"}
    if current != compared_with:
        why = (f"not promoted: the champion changed from v{compared_with} to v{current} while the approval "
               f"request waited, so the gate's comparison is stale; re-run the retrain to evaluate v{version} "
               "against the new champion")
        record_outcome(wh, spec, run_id=run_id, version=version, promoted=False, outcome=why)
        raise ApprovalRefused(why)
    note = comment or "no comment"

    # rollout.strategy: canary - the approved challenger becomes the canary candidate, not the champion
    res = release.release(
        wh, spec, version, action="promote", actor=f"user:{approver}",
        reason=f"approved by {approver}: {note} (gate: {promotion.get('gate_reason', '')})", run_id=run_id,
        metrics={"challenger": evaluation.get("challenger"), "champion": evaluation.get("champion"),
                 "checks": promotion.get("checks"), "approval": {"by": approver, "comment": comment}},
        # compare-and-swap under the registry lock: the check above is only the early, readable answer
        expected_champion=compared_with, newer_only=True, as_of=as_of, triggered_by=triggered_by)
    if res.get("canary"):
        state = f"canary {res['canary']}: approved by {approver}"
        record_outcome(wh, spec, run_id=run_id, version=version, promoted=False, outcome=state)
        return {"version": version, "promoted": False, **res, "message": f"v{version}: {state}"}
    if res.get("refused"):
        why = f"not promoted: {res['refused']}"
        record_outcome(wh, spec, run_id=run_id, version=version, promoted=False, outcome=why)
        raise ApprovalRefused(why)
    status.record_gate_outcome(wh, spec, run_id=run_id, version=version,
                                 outcome=f"promoted (approved by {approver})")
    record_outcome(wh, spec, run_id=run_id, version=version, promoted=True, outcome=f"promoted: approved by {approver}")
    return {"version": version, "promoted": True, **res, "message": f"version {version} is the champion (approved "
            f"by {approver})"}
