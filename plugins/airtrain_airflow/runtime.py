"""Task bodies of the pipelines' DAGs: read the Airflow context, call :mod:`airtrain.steps`.

A thin adapter: each function reads what the task's context holds (params, the plan, the run id, the
triggering asset events), calls one step of the core and turns its answer into Airflow's terms (a
permanent error fails the task at once, ``{"skipped": why}`` skips it). Imported inside tasks only
(never at DAG parse time). Every function returns a small JSON-able dict for XCom; data stays in the
warehouse. Alerts go out through :mod:`airtrain_airflow.notify` once the step says they are due, and are
recorded as sent after they went out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Generator
from typing import Any

from airflow.sdk import get_current_context
from airtrain.dates import resolve_partition
from airtrain.spec import PipelineSpec, load_spec, spec_dir

from airtrain_airflow import notify
from airtrain_airflow.hooks import WarehouseHook
from airtrain_airflow.links import report_url
from airtrain_airflow.storage import landing_root, report_store


def _params_error(message: str) -> Exception:
    """Refused parameters fail the task at once: retrying cannot make them valid."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


@contextlib.contextmanager
def fail_fast() -> Generator[None, None, None]:
    """Fail the task at once, without retries, on a permanent error (:class:`airtrain.errors.PermanentError`:
    bad input, bad parameters, a refused artifact, ...). Anything else (a lost connection, a lock
    timeout) propagates as it is (retried), its text redacted. Usable as a decorator or a ``with`` block."""
    from airtrain.errors import PermanentError
    from airtrain.warehouse import redact_exception, redact_text

    try:
        yield
    except PermanentError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        redact_exception(exc)  # what Airflow logs and alerts carry: never a password or key
        raise AirflowFailException(redact_text(f"{type(exc).__name__}: {exc}")) from exc
    except Exception as exc:  # noqa: BLE001 - re-raised as it is: the same exception, so the same retries
        redact_exception(exc)  # its text redacted in place
        raise


def spec_for(name: str) -> PipelineSpec:
    return load_spec(spec_dir() / f"{name}.yaml")


def warehouse_for(spec: PipelineSpec):
    return WarehouseHook(postgres_conn_id=spec.warehouse.conn_id).get_warehouse()


def _skip_if(result: Any) -> Any:
    """A step's ``{"skipped": why}`` skips the task with that reason; anything else is the result."""
    if isinstance(result, dict) and set(result) == {"skipped"}:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(result["skipped"])
    return result


def _day(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _actor(ctx: Any) -> str:
    dag_run = ctx.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None)
    run_type = getattr(dag_run, "run_type", None)
    if user:
        return f"user:{user}"
    return f"airflow:{getattr(run_type, 'value', run_type) or 'unknown'}"


def run_instant(ctx: Any) -> dt.datetime | None:
    """When the run is "for": its logical date, or - for a manual, REST or asset-triggered run
    without one (Airflow 3 allows ``logical_date: null``) - the time it was queued (``run_after``)."""
    logical = ctx.get("logical_date")
    if logical is not None:
        return logical
    return getattr(ctx.get("dag_run"), "run_after", None)


def unknown_conf_keys(ctx: Any) -> tuple[list[str], list[str]]:
    """The run conf's keys the DAG has no param for, and the known ones (Airflow's params accept
    unknown keys silently: a typo like ``rollback_verison`` would otherwise run as a normal run)."""
    conf = getattr(ctx.get("dag_run"), "conf", None) or {}
    dag = ctx.get("dag")
    known = sorted(getattr(dag, "params", None) or ctx.get("params") or {})
    return sorted(k for k in conf if k not in known), known


@fail_fast()
def check_params(name: str) -> dict[str, Any]:
    """Refuse unknown parameter keys (Airflow accepts them silently), then the plan every task follows
    (:func:`airtrain.steps.plan.plan_run`: the params checked together, the dates decided once)."""
    import difflib

    from airtrain.steps import plan

    ctx = get_current_context()
    unknown, known = unknown_conf_keys(ctx)
    if unknown:
        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else repr(k)
                 for k in unknown]
        raise _params_error(f"refused the run parameters, nothing was done: unknown key(s) {', '.join(hints)}; "
                            f"the known keys are: {', '.join(known)}")
    spec = spec_for(name)
    try:
        return plan.plan_run(lambda: warehouse_for(spec), spec, dict(ctx["params"]), instant=run_instant(ctx),
                             run_id=ctx["run_id"], actor=_actor(ctx))
    except plan.RunRefused as exc:
        raise _params_error(str(exc)) from None


def _dates(plan: dict[str, Any]) -> list[dt.date]:
    return [dt.date.fromisoformat(d) for d in plan["dates"]]


@fail_fast()
def prepare(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    from airtrain.steps import schema

    spec = spec_for(name)
    return schema.prepare(warehouse_for(spec), spec)  # verifies; $AIRTRAIN_AUTO_MIGRATE=1 applies


@fail_fast()
def ingest(name: str, plan: dict[str, Any]) -> list[dict[str, Any]]:
    from airtrain.steps import retrain

    spec = spec_for(name)
    return retrain.ingest(warehouse_for(spec), spec, _dates(plan), plan["run_id"], landing_root())


@fail_fast()
def validate(name: str, plan: dict[str, Any], on_stored: Any = None) -> list[dict[str, Any]]:
    from airtrain.steps import retrain

    spec = spec_for(name)
    return retrain.validate(warehouse_for(spec), spec, _dates(plan), plan["run_id"],
                            today=dt.date.fromisoformat(plan["run_date"]), reports_root=report_store(),
                            on_stored=on_stored)


@fail_fast()
def train(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Train; too little labeled data yet is a skip (the champion keeps scoring), not a failure."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airtrain.steps import retrain

    spec = spec_for(name)
    wh = warehouse_for(spec)
    why_not = retrain.training_skipped(wh, spec, plan)
    if why_not:
        raise AirflowSkipException(why_not)
    as_of = retrain.training_as_of(dt.date.fromisoformat(plan["as_of"]))
    try:
        return retrain.train(wh, spec, as_of, plan["run_id"])
    except retrain.InsufficientDataError as exc:
        raise AirflowSkipException(f"not retraining: {exc}") from exc


def fairness_alerts(name: str, decision: dict[str, Any]) -> list[str]:
    """Alert on each ``fairness.monitor`` breach of the checked windows that was not alerted yet, then
    record that it was (once per window and rule; a crash between the alert and its mark may repeat it)."""
    if not decision:
        return []
    windows = decision.get("windows") or [{"window_end": decision.get("window_end"), "fairness_breach": any(
        c.get("status") == "breach" for c in decision.get("fairness") or [])}]
    sent: list[str] = []
    for w in windows:
        if w.get("fairness_breach"):
            sent += _fairness_alerts(name, dt.date.fromisoformat(w["window_end"]))
    return sent


def _fairness_alerts(name: str, window_end: dt.date) -> list[str]:
    from airtrain.steps import monitor

    spec = spec_for(name)
    wh = warehouse_for(spec)
    sent: list[str] = []
    for b in monitor.fairness_alerts_due(wh, spec, window_end):
        sent += notify.fairness_breach(name, spec.warehouse.monitoring_schema, window_end, b)
        monitor.mark_fairness_alerted(wh, spec, window_end, b["attribute"], b["metric"])
    return sent


def drift_alerts(name: str, decision: dict[str, Any]) -> list[str]:
    """``monitoring.trigger.feature_drift: alert``: alert on each checked window whose drift is alert-only
    (decision ``drift_alert``) and due, then record that it was (once per window)."""
    from airtrain.steps import monitor

    if not decision:
        return []
    ends = [dt.date.fromisoformat(w["window_end"]) for w in decision.get("windows") or [decision]
            if w.get("decision") == "drift_alert"]
    if not ends:
        return []
    spec = spec_for(name)
    wh = warehouse_for(spec)
    sent: list[str] = []
    for w in monitor.drift_alerts_due(wh, spec, ends):
        sent += notify.drift_alert(name, w)
        monitor.mark_drift_alerted(wh, spec, w["window_end"])
    return sent


def record_trigger(name: str, decision: dict[str, Any]) -> list[str]:
    """After ``trigger_retrain``: record on the window what really happened, then alert.

    The retrain run's existence is asked of Airflow itself (the trigger may have created it, or found
    it from an earlier firing/try - it then skips); only then are the run id and the cooldown
    recorded and "retrain triggered" alerted, once per window (a retry after the record but before
    the alert still alerts; a crash between the alert and its mark may repeat it). No run: the trigger failed - nothing
    starts a cooldown and the alert says so."""
    from airtrain.steps import monitor

    if not decision or not decision.get("trigger"):
        return []
    ctx = get_current_context()
    spec = spec_for(name)
    run_id = str(decision["retrain_run_id"])
    exists = ctx["ti"].get_dr_count(dag_id=spec.retrain_dag_id, run_ids=[run_id]) > 0
    window_end = dt.date.fromisoformat(decision["window_end"])
    if not exists:
        error = (f"no run {run_id} of {spec.retrain_dag_id} exists: the trigger_retrain task did not create it "
                 "(see its log)")
        monitor.record_trigger(warehouse_for(spec), spec, window_end, run_id=None, error=error)
        return notify.retrain_decision(name, decision, failed=error)
    wh = warehouse_for(spec)
    if not monitor.record_trigger(wh, spec, window_end, run_id=run_id):
        return []  # recorded and alerted before (a retry, or the window was checked again)
    sent = notify.retrain_decision(name, decision)
    monitor.mark_trigger_alerted(wh, spec, window_end)
    return sent


@fail_fast()
def evaluate(name: str, plan: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    from airtrain.steps import retrain

    spec = spec_for(name)
    return retrain.evaluate(warehouse_for(spec), spec, int(trained["version"]), plan["run_id"],
                            dt.date.fromisoformat(trained.get("as_of") or plan["as_of"]))


@fail_fast()
def promote(name: str, plan: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    from airtrain.steps import release

    spec = spec_for(name)
    wh = warehouse_for(spec)
    out = release.promote(wh, spec, evaluation, run_id=plan["run_id"], actor=plan["actor"],
                          force=plan["force_promote"], reason=plan["reason"], dry_run=plan["dry_run"],
                          approval_required=spec.promotion.approval == "required", as_of=_day(plan.get("as_of")))
    if out.get("awaiting_approval"):
        links = {}
        if plan.get("drift_report_id"):
            links["Drift report that triggered this retrain"] = report_url(spec.name, "drift",
                                                                           plan["drift_report_id"])
        for d in plan.get("dates") or []:
            links[f"Validation report {d}"] = report_url(spec.name, "validation", d)
        out["approval_body"] = release.approval_request(wh, spec, plan["run_id"], evaluation, out,
                                                        dict(list(links.items())[-5:]))
    return out


@fail_fast()
def record_approval(name: str, *, run_id: str, version: int, champion_version: int | None,
                    decision: dict[str, Any], responded_at: Any = None) -> None:
    """Store a human's answer (or the timeout) to a promotion request in registry.approvals."""
    from airtrain.steps import release

    spec = spec_for(name)
    release.record_approval(warehouse_for(spec), spec, run_id=run_id, version=version,
                            champion_version=champion_version, decision=decision, responded_at=responded_at)


@fail_fast()
def promote_approved(name: str, plan: dict[str, Any], evaluation: dict[str, Any], promotion: dict[str, Any],
                     approval: dict[str, Any]) -> dict[str, Any]:
    """Promote the challenger a person approved (same locked, logged path; approver and comment logged)."""
    from airtrain.steps import release

    spec = spec_for(name)
    who = approval.get("responded_by_user") or {}
    approver = str(who.get("name") or who.get("id") or "unknown")
    comment = str((approval.get("params_input") or {}).get("comment") or "").strip() or None
    return release.promote_approved(warehouse_for(spec), spec, promotion, evaluation, run_id=plan["run_id"],
                                    approver=approver, comment=comment, as_of=_day(plan.get("as_of")),
                                    triggered_by=plan["actor"])


@fail_fast()
def score_approved(name: str, plan: dict[str, Any], approved: dict[str, Any]) -> dict[str, Any] | None:
    """After an approved promotion: score the run's date when nobody could score it earlier
    (:func:`airtrain.steps.serving.score_approved`); the published partition names the date in the
    task's asset event, so the monitor checks it."""
    from airtrain.steps import serving

    spec = spec_for(name)
    return _skip_if(serving.score_approved(warehouse_for(spec), spec, _day(plan.get("as_of")), run_id=plan["run_id"],
                                           approved=approved))


@fail_fast()
def promotion_hold(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """promotion_hold: hold or release automatic promotions of the pipeline (a person's decision, with a
    reason, in registry.promotion_holds); nothing is trained or scored."""
    from airtrain.steps import release

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"promotion_hold": plan["promotion_hold"], "dry_run": True}
    return release.promotion_hold(warehouse_for(spec), spec, plan["promotion_hold"], actor=plan["actor"],
                                  reason=plan["reason"], run_id=plan["run_id"])


@fail_fast()
def rollback(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Effective for the date this run re-scores (``begin_scoring``) and every later one; without a date,
    the newest validated one."""
    from airtrain.steps import release

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"action": "rollback", "dry_run": True, "to_version": plan["rollback_version"]}
    return release.rollback(warehouse_for(spec), spec, int(plan["rollback_version"]), run_id=plan["run_id"],
                            actor=plan["actor"], reason=plan["reason"],
                            expected_champion=plan.get("expected_champion", release.ANY_CHAMPION),
                            as_of=_day(plan.get("as_of")))


@fail_fast()
def decide_canary(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """A person graduates or aborts the running canary (canary_action + reason); an abort is alerted."""
    from airtrain.steps import release

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"decision": plan["canary_action"], "dry_run": True}
    out = release.decide_canary(warehouse_for(spec), spec, plan["canary_action"], reason=plan["reason"],
                                actor=plan["actor"], run_id=plan["run_id"], on=_day(plan.get("as_of")))
    alert_aborted_canaries(name)
    return out


def alert_aborted_canaries(name: str) -> list[str]:
    """Alert every aborted canary not alerted yet, then record that it was (effect first, record after)."""
    from airtrain.steps import monitor

    spec = spec_for(name)
    wh = warehouse_for(spec)
    sent: list[str] = []
    for r in monitor.aborted_canaries_due(wh, spec):
        sent += notify.canary_aborted(name, spec.warehouse.monitoring_schema, r)
        monitor.mark_canary_alerted(wh, spec, int(r["id"]))
    return sent


def triggering_extras(ctx: Any) -> list[dict[str, Any]]:
    """The ``extra`` of every asset event that started this run (Airflow 3 hands an asset-triggered run
    all the events queued since the previous one), oldest first."""
    events = ctx.get("triggering_asset_events") or {}
    out = [e for asset in events for e in events[asset]]
    out.sort(key=lambda e: (str(getattr(e, "timestamp", "") or ""), getattr(e, "id", 0) or 0))
    return [dict(e.extra or {}) for e in out]


@fail_fast()
def canary_check(name: str) -> dict[str, Any]:
    """The monitor's canary decisions, oldest first: for the ``date`` param, every date published by the
    triggering asset events, or the day before the run's logical date. Once a check graduates or
    aborts the canary, the later dates find none running."""
    from airtrain.steps import monitor

    ctx = get_current_context()
    spec = spec_for(name)
    tz = spec.schedule.timezone
    extras = triggering_extras(ctx)
    if ctx["params"].get("date"):
        ends = [resolve_partition(ctx["params"]["date"], None, tz)]
    elif extras:
        ends = monitor.dates_from_events(spec.name, extras)
    else:
        ends = [resolve_partition(None, run_instant(ctx), tz)]
    out = monitor.canary_check(warehouse_for(spec), spec, ends, run_id=ctx["run_id"])
    out["alerts"] = alert_aborted_canaries(name)
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in out.items()}


@fail_fast()
def begin_scoring(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Create the stage table for the run's date (the last date of a range)."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airtrain.steps import serving

    if plan["dry_run"]:
        raise AirflowSkipException("dry run: no predictions are written")
    if plan.get("mode") == "hold":
        raise AirflowSkipException("a promotion hold run: the champion is unchanged, nothing to score")
    if plan.get("skip"):
        raise AirflowSkipException(plan["skip"])
    spec = spec_for(name)
    ti = get_current_context()["ti"]
    return _skip_if(serving.begin_scoring(
        warehouse_for(spec), spec, _day(plan.get("as_of")), run_id=plan["run_id"],
        is_live=lambda run: stage_owner_may_resume(ti, spec.retrain_dag_id, run)))


#: the states of a run whose scoring may still go on: queued or running, or failed - a failed run is
#: cleared and resumed from its failed tasks (Airflow's "Clear"), which need the run's stage; its stage
#: is dropped only once older than publish.STAGE_MAX_AGE (found by the chaos soak: a failed run's
#: stage was dropped by the next run's begin_scoring, and clearing the failed shards could not recover)
RESUMABLE_RUN_STATES = ("queued", "running", "failed")


def stage_owner_may_resume(ti: Any, dag_id: str, run_id: str) -> bool:
    """Whether ``run_id`` may still need its stage table (drop_orphan_stages' ``is_live``)."""
    return ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=list(RESUMABLE_RUN_STATES)) > 0
