"""Task bodies of the retrain DAG: read the Airflow context, call :mod:`airtrain.steps`.

Imported inside tasks only (never at DAG parse time). Every function returns a small JSON-able
dict for XCom; data stays in the warehouse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context
from airtrain.dates import date_range, parse_date, resolve_partition
from airtrain.spec import PipelineSpec, load_spec, spec_dir

from airtrain_airflow.hooks import WarehouseHook


def _params_error(message: str) -> Exception:
    """Refused parameters fail the task at once: retrying cannot make them valid."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


@contextlib.contextmanager
def fail_fast() -> Generator[None, None, None]:
    """Fail the task at once, without retries, on a permanent error (:class:`airtrain.errors.PermanentError`:
    bad input, bad parameters, a refused artifact, ...). Anything else (a lost connection, a lock
    timeout) propagates unchanged and is retried. Usable as a decorator or a ``with`` block."""
    from airtrain.errors import PermanentError

    try:
        yield
    except PermanentError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def project_root() -> Path:
    return Path(os.environ.get("AIRTRAIN_PROJECT_ROOT") or Path(__file__).resolve().parents[2])


def reports_root() -> Path:
    return Path(os.environ.get("AIRTRAIN_REPORTS_DIR") or project_root() / "data" / "reports")


def report_store():
    """The one place reports are written to and read from (:mod:`airtrain.reports`)."""
    from airtrain.reports import ReportStore

    return ReportStore(reports_root())


def spec_for(name: str) -> PipelineSpec:
    return load_spec(spec_dir() / f"{name}.yaml")


def warehouse_for(spec: PipelineSpec):
    return WarehouseHook(postgres_conn_id=spec.warehouse.conn_id).get_warehouse()


def _actor(ctx: Any) -> str:
    dag_run = ctx.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None)
    run_type = getattr(dag_run, "run_type", None)
    if user:
        return f"user:{user}"
    return f"airflow:{getattr(run_type, 'value', run_type) or 'unknown'}"


def check_params(name: str) -> dict[str, Any]:
    """Validate the params together (types were already checked by Airflow's JSON schema)."""
    ctx = get_current_context()
    spec = spec_for(name)
    p = dict(ctx["params"])
    reason = (p.get("reason") or "").strip()
    logical = ctx.get("logical_date")
    run_date = (logical.date() if logical else dt.datetime.now(dt.UTC).date())
    problems = []
    if p.get("force_promote") and len(reason) < 5:
        problems.append("force_promote needs a 'reason' of at least 5 characters (it goes into the promotion log)")
    if p.get("rollback_version") is not None:
        if len(reason) < 5:
            problems.append("rollback_version needs a 'reason' of at least 5 characters")
        if p.get("force_promote"):
            problems.append("use either rollback_version or force_promote, not both")
    if p.get("end_date") and not p.get("date"):
        problems.append("end_date needs date (the first day of the range)")
    dates: list[dt.date] = []
    if not problems and p.get("rollback_version") is None:
        try:
            first = resolve_partition(p.get("date"), logical, spec.schedule.timezone)
            last = parse_date(p["end_date"], "end_date") if p.get("end_date") else first
            dates = date_range(first, last)
            today = dt.datetime.now(dt.UTC).date()
            if last > today:
                problems.append(f"date {last} is in the future (today is {today} UTC); no data can exist yet")
        except ValueError as exc:
            problems.append(str(exc))
    if not problems and p.get("rollback_version") is not None:
        from airtrain import registry

        try:
            registry.get_version(warehouse_for(spec), spec, int(p["rollback_version"]))
        except registry.RegistryError as exc:
            problems.append(str(exc))
    rescore = None
    if not problems and p.get("rollback_version") is not None:
        try:  # the date a rollback re-scores; None: the newest validated one (see begin_scoring)
            rescore = resolve_partition(p.get("date"), logical, spec.schedule.timezone).isoformat()
        except ValueError:
            rescore = None
    if problems:
        raise _params_error("refused the run parameters, nothing was done:\n  - " + "\n  - ".join(problems))
    return {
        "mode": "rollback" if p.get("rollback_version") is not None else "retrain",
        "dates": [d.isoformat() for d in dates],
        "as_of": dates[-1].isoformat() if dates else rescore,
        "run_date": run_date.isoformat(),
        "run_id": ctx["run_id"],
        "force_promote": bool(p.get("force_promote")),
        "dry_run": bool(p.get("dry_run")),
        "rollback_version": p.get("rollback_version"),
        "reason": reason or None,
        "actor": _actor(ctx),
        "trigger_reason": p.get("trigger_reason") or "schedule",
        "force_train": bool(p.get("force_train")),
        "drift_report_id": p.get("drift_report_id") or None,
    }


def _dates(plan: dict[str, Any]) -> list[dt.date]:
    return [dt.date.fromisoformat(d) for d in plan["dates"]]


@fail_fast()
def prepare(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    from airtrain import steps

    spec = spec_for(name)
    return steps.prepare(warehouse_for(spec), spec)


@fail_fast()
def ingest(name: str, plan: dict[str, Any]) -> list[dict[str, Any]]:
    from airtrain import steps

    spec = spec_for(name)
    return steps.ingest(warehouse_for(spec), spec, _dates(plan), plan["run_id"], project_root())


@fail_fast()
def validate(name: str, plan: dict[str, Any], on_stored: Any = None) -> list[dict[str, Any]]:
    from airtrain import steps

    spec = spec_for(name)
    return steps.validate(warehouse_for(spec), spec, _dates(plan), plan["run_id"],
                          today=dt.date.fromisoformat(plan["run_date"]), reports_root=report_store(),
                          on_stored=on_stored)


@fail_fast()
def train(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Train; too little labeled data yet is a skip (the champion keeps scoring), not a failure."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airtrain import steps
    from airtrain.training import InsufficientDataError

    spec = spec_for(name)
    wh = warehouse_for(spec)
    why = training_requested(spec, plan)
    if why is None:
        from airtrain import registry

        if registry.champion_version(wh, spec) is not None:
            raise AirflowSkipException(
                "not retraining: training.cadence is on_trigger and this is a scheduled run (the drift "
                "monitor triggers retraining; or start a run with force_train)")
    as_of = steps.training_as_of(wh, spec, dt.date.fromisoformat(plan["as_of"]),
                                 dt.date.fromisoformat(plan["run_date"]), plan.get("trigger_reason"))
    try:
        return steps.train(wh, spec, as_of, plan["run_id"])
    except InsufficientDataError as exc:
        raise AirflowSkipException(f"not retraining: {exc}") from exc


def training_requested(spec: PipelineSpec, plan: dict[str, Any]) -> str | None:
    """Why this run trains (None: it only ingests, validates and scores)."""
    if spec.training.cadence == "daily":
        return "training.cadence is daily"
    if plan.get("force_train"):
        return "force_train"
    if (plan.get("trigger_reason") or "schedule") != "schedule":
        return f"triggered: {plan['trigger_reason']}"
    return None


def notify_decision(name: str, decision: dict[str, Any]) -> list[str]:
    """Alert on a triggered retrain; nothing to say otherwise."""
    from airtrain_airflow.notify import send_alert
    from airtrain_airflow.operators.drift import report_url

    if not decision or not decision.get("trigger"):
        return []
    msg = (f"retrain triggered for window {decision['window_start']}..{decision['window_end']} "
           f"(run {decision['retrain_run_id']}): {decision['reason']}. Report: "
           f"{report_url(name, decision.get('report_id'))}")
    return send_alert(name, "retrain triggered", msg, {k: decision.get(k) for k in (
        "window_end", "decision", "drift_share", "report_id", "retrain_run_id", "model_version")})


@fail_fast()
def evaluate(name: str, plan: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    from airtrain import steps

    spec = spec_for(name)
    return steps.evaluate(warehouse_for(spec), spec, int(trained["version"]), plan["run_id"],
                          dt.date.fromisoformat(trained.get("as_of") or plan["as_of"]))


@fail_fast()
def promote(name: str, plan: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    from airtrain import steps

    spec = spec_for(name)
    wh = warehouse_for(spec)
    approval = spec.promotion.approval == "required"
    out = steps.promote(wh, spec, evaluation, run_id=plan["run_id"], actor=plan["actor"],
                        force=plan["force_promote"], reason=plan["reason"], dry_run=plan["dry_run"],
                        approval_required=approval)
    if out.get("awaiting_approval"):
        out["approval_body"] = _approval_body(wh, spec, plan, evaluation, out)
    return out


def _approval_body(wh: Any, spec: PipelineSpec, plan: dict[str, Any], evaluation: dict[str, Any],
                   promotion: dict[str, Any]) -> str:
    """The Markdown shown to the approver (metrics vs champion, gate checks, slices, reports)."""
    from airtrain import release

    from airtrain_airflow.links import report_url

    links = {}
    if plan.get("drift_report_id"):
        links["Drift report that triggered this retrain"] = report_url(spec.name, "drift", plan["drift_report_id"])
    for d in plan.get("dates") or []:
        links[f"Validation report {d}"] = report_url(spec.name, "validation", d)
    gate = {"passed": promotion.get("gate_passed"), "checks": promotion.get("checks", [])}
    return release.approval_body(spec, evaluation, gate, release.slice_metrics(wh, spec, plan["run_id"]),
                                 dict(list(links.items())[-5:]))


@fail_fast()
def record_approval(name: str, *, run_id: str, version: int, champion_version: int | None,
                    decision: dict[str, Any], responded_at: Any = None) -> None:
    """Store a human's answer (or the timeout) to a promotion request in registry.approvals."""
    from airtrain import release

    spec = spec_for(name)
    release.record_decision(warehouse_for(spec), spec, run_id=run_id, version=version,
                            champion_version=champion_version, decision=decision, responded_at=responded_at)


@fail_fast()
def promote_approved(name: str, plan: dict[str, Any], evaluation: dict[str, Any], promotion: dict[str, Any],
                     approval: dict[str, Any]) -> dict[str, Any]:
    """Promote the challenger a person approved (same locked, logged path; approver and comment logged)."""
    from airtrain import release

    spec = spec_for(name)
    who = approval.get("responded_by_user") or {}
    approver = str(who.get("name") or who.get("id") or "unknown")
    comment = str((approval.get("params_input") or {}).get("comment") or "").strip() or None
    return release.promote_approved(warehouse_for(spec), spec, promotion, evaluation, run_id=plan["run_id"],
                                    approver=approver, comment=comment)


@fail_fast()
def rollback(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    from airtrain import steps

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"action": "rollback", "dry_run": True, "to_version": plan["rollback_version"]}
    return steps.rollback(warehouse_for(spec), spec, int(plan["rollback_version"]), run_id=plan["run_id"],
                          actor=plan["actor"], reason=plan["reason"])


@fail_fast()
def begin_scoring(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Create the stage table for the run's date (the last date of a range)."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airtrain import scoring

    if plan["dry_run"]:
        raise AirflowSkipException("dry run: no predictions are written")
    spec = spec_for(name)
    wh = warehouse_for(spec)
    if plan.get("as_of"):
        as_of = dt.date.fromisoformat(plan["as_of"])
    else:  # a rollback in a run without a date or logical date re-scores the newest validated day
        as_of = scoring.newest_validated_date(wh, spec)
        if as_of is None:
            raise AirflowSkipException("no predictions: no validated partition to score yet")
    try:
        return scoring.begin(wh, spec, as_of, "champion", run_id=plan["run_id"]).as_dict()
    except scoring.NoModelError as exc:
        raise AirflowSkipException(f"no predictions today: {exc}") from exc
