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
    timeout) propagates as it is (retried), its text redacted. Usable as a decorator or a ``with`` block."""
    from airtrain.db import redact_exception, redact_text
    from airtrain.errors import PermanentError

    try:
        yield
    except PermanentError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        redact_exception(exc)  # what Airflow logs and alerts carry: never a password or key
        raise AirflowFailException(redact_text(f"{type(exc).__name__}: {exc}")) from exc
    except Exception as exc:  # noqa: BLE001 - re-raised as it is: the same exception, so the same retries
        redact_exception(exc)  # its text redacted in place
        raise


def project_root() -> Path:
    return Path(os.environ.get("AIRTRAIN_PROJECT_ROOT") or Path(__file__).resolve().parents[2])


def reports_root() -> Path:
    return Path(os.environ.get("AIRTRAIN_REPORTS_DIR") or project_root() / "data" / "reports")


def storage_path(url: str, conn_id: str | None = None):
    """An Airflow ``ObjectStoragePath`` for ``url`` (``file://``, ``s3://``, ``gs://``, ``ftp://``, ...).
    ``conn_id`` (or ``<scheme>://<conn_id>@bucket/...``) names the Airflow connection with the
    credentials; the filesystem comes from the provider that registers the scheme (s3: the amazon
    provider + s3fs)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url, conn_id=conn_id or None)


class ObjectStoreError(RuntimeError):
    """The object store behind a configured URL cannot be used (no such bucket, or the connection
    cannot reach it). The message names the URL and the connection, never a credential."""


def _conn_label(path: Any, conn_id: str | None) -> str:
    conn = conn_id or getattr(path, "conn_id", None)
    return f"connection {conn!r}" if conn else "no connection (the library's default credentials)"


def checked_store(url: str, conn_id: str | None, what: str, setting: str):
    """``storage_path(url, conn_id)`` once its bucket answers: a wrong or missing bucket, an unknown
    connection or an unreachable endpoint fails HERE with one readable line naming ``setting``, the
    URL and the connection, instead of later as "file not found" or a library traceback. Local
    folders (``file://``) are not checked: they are created on the first write."""
    from airtrain.db import redact_text

    try:
        path = storage_path(url, conn_id)
    except Exception as exc:  # noqa: BLE001 - an unknown scheme, a provider or fs library missing, a bad URL
        raise ObjectStoreError(redact_text(
            f"{what}: cannot open {setting}={url} ({type(exc).__name__}: {exc})")) from None
    protocol = str(getattr(path, "protocol", "") or "")
    bucket = str(getattr(path, "bucket", "") or "")
    if protocol in ("", "file", "local") or not bucket:
        return path
    try:
        found = path.fs.exists(bucket)
    except Exception as exc:  # noqa: BLE001 - re-raised as one line without the library's traceback
        raise ObjectStoreError(redact_text(
            f"{what}: the bucket {bucket!r} of {setting}={url} could not be checked through "
            f"{_conn_label(path, conn_id)}: {type(exc).__name__}: {exc}")) from None
    if not found:
        raise ObjectStoreError(redact_text(
            f"{what}: the bucket {bucket!r} of {setting}={url} does not exist or {_conn_label(path, conn_id)} "
            "cannot reach it (check the bucket name, and the connection's endpoint_url, region and credentials)"))
    return path


def reports_url() -> str:
    """Where reports live: ``$AIRTRAIN_REPORTS_URL``, else the folder ``$AIRTRAIN_REPORTS_DIR`` (default
    ``<project>/data/reports``) as a ``file://`` URL. Every component (workers, api-server) must
    reach it: on more than one machine, use object storage (docs/SCALING.md)."""
    url = os.environ.get("AIRTRAIN_REPORTS_URL", "").strip()
    return url or reports_root().resolve().as_uri()


def report_store():
    """The one place reports are written to and read from (:mod:`airtrain.reports`), through Airflow's
    ObjectStoragePath at :func:`reports_url` (connection: ``$AIRTRAIN_REPORTS_CONN_ID``)."""
    from airtrain.reports import ReportStore

    url = reports_url()
    return ReportStore(checked_store(url, os.environ.get("AIRTRAIN_REPORTS_CONN_ID"), "reports",
                                     "AIRTRAIN_REPORTS_URL"), url=url)


def landing_url() -> str:
    """The root that a ``files`` source's ``source.path`` is relative to: ``$AIRTRAIN_LANDING_URL``
    (e.g. ``s3://aws_default@landing-bucket/airtrain``), else the project root as ``file://``."""
    url = os.environ.get("AIRTRAIN_LANDING_URL", "").strip()
    return url or project_root().resolve().as_uri()


def landing_root():
    """The landing root as an ObjectStoragePath (connection: ``$AIRTRAIN_LANDING_CONN_ID``)."""
    return checked_store(landing_url(), os.environ.get("AIRTRAIN_LANDING_CONN_ID"), "landing files",
                         "AIRTRAIN_LANDING_URL")


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
    """Validate the params together (types were already checked by Airflow's JSON schema) and decide
    the run's dates once, in the spec's timezone, for every mode (the plan every task follows)."""
    import difflib
    from zoneinfo import ZoneInfo

    ctx = get_current_context()
    unknown, known = unknown_conf_keys(ctx)
    if unknown:
        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else repr(k)
                 for k in unknown]
        raise _params_error(f"refused the run parameters, nothing was done: unknown key(s) {', '.join(hints)}; "
                            f"the known keys are: {', '.join(known)}")
    spec = spec_for(name)
    tz = ZoneInfo(spec.schedule.timezone)
    p = dict(ctx["params"])
    reason = (p.get("reason") or "").strip()
    instant = run_instant(ctx)
    run_date = (instant or dt.datetime.now(dt.UTC)).astimezone(tz).date()
    today = dt.datetime.now(tz).date()
    problems = []
    if p.get("force_promote") and len(reason) < 5:
        problems.append("force_promote needs a 'reason' of at least 5 characters (it goes into the promotion log)")
    if p.get("rollback_version") is not None:
        if len(reason) < 5:
            problems.append("rollback_version needs a 'reason' of at least 5 characters")
        if p.get("force_promote"):
            problems.append("use either rollback_version or force_promote, not both")
    if p.get("canary_action"):
        if len(reason) < 5:
            problems.append("canary_action needs a 'reason' of at least 5 characters (it goes into registry.rollouts)")
        if p.get("force_promote") or p.get("rollback_version") is not None:
            problems.append("use canary_action alone (not with force_promote or rollback_version)")
        if spec.rollout.strategy != "canary":
            problems.append(f"canary_action needs rollout.strategy: canary in {spec.name}'s spec")
    if p.get("promotion_hold"):
        if len(reason) < 5:
            problems.append("promotion_hold needs a 'reason' of at least 5 characters (it goes into "
                            "registry.promotion_holds)")
        if p.get("force_promote") or p.get("rollback_version") is not None or p.get("canary_action"):
            problems.append("use promotion_hold alone (not with force_promote, rollback_version or canary_action)")
    manual = p.get("rollback_version") is not None or bool(p.get("canary_action")) or bool(p.get("promotion_hold"))
    if p.get("end_date") and not p.get("date"):
        problems.append("end_date needs date (the first day of the range)")
    dates: list[dt.date] = []
    expected: dict[str, Any] = {}
    if not problems and not manual:
        try:
            first = resolve_partition(p.get("date"), instant, spec.schedule.timezone)
            last = parse_date(p["end_date"], "end_date") if p.get("end_date") else first
            dates = date_range(first, last)
            if last > today:
                problems.append(f"date {last} is in the future (today is {today} in {spec.schedule.timezone}); "
                                "no data can exist yet")
        except ValueError as exc:
            problems.append(str(exc))
    if not problems and p.get("rollback_version") is not None:
        from airtrain import registry

        try:
            registry.get_version(warehouse_for(spec), spec, int(p["rollback_version"]))
            # the rollback is a compare-and-swap against the champion of now (see steps.rollback)
            expected = {"expected_champion": registry.champion_version(warehouse_for(spec), spec)}
        except registry.RegistryError as exc:
            problems.append(str(exc))
    rescore = None
    if not problems and manual:
        try:  # the date a rollback (or a canary decision) re-scores; None: the newest validated one (see begin_scoring)
            rescore = resolve_partition(p.get("date"), instant, spec.schedule.timezone).isoformat()
        except ValueError:
            rescore = None
    if not problems and p.get("rollback_version") is not None:  # can it score today's features? (issue 27)
        from airtrain.evolution import score_problems

        v = int(p["rollback_version"])
        problems += [f"rollback_version {v} cannot score under the current spec: {why}" for why in score_problems(
            warehouse_for(spec), spec, v, dt.date.fromisoformat(rescore) if rescore else None)]
    if problems:
        raise _params_error("refused the run parameters, nothing was done:\n  - " + "\n  - ".join(problems))
    skip = None
    if dates:
        dates, outside = spec.schedule.with_data(dates)
        if outside:
            import logging

            skip = None if dates else f"nothing to do: {outside}"
            logging.getLogger(__name__).warning("%s", skip or f"left out {outside}")
    return {
        "mode": "rollback" if p.get("rollback_version") is not None else "canary" if p.get("canary_action")
        else "hold" if p.get("promotion_hold") else "retrain",
        "promotion_hold": p.get("promotion_hold") or None,
        "canary_action": p.get("canary_action") or None,
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
        "skip": skip,
        **expected,
    }


def _dates(plan: dict[str, Any]) -> list[dt.date]:
    return [dt.date.fromisoformat(d) for d in plan["dates"]]


@fail_fast()
def prepare(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    from airtrain import steps

    spec = spec_for(name)
    return steps.prepare(warehouse_for(spec), spec)  # verifies; $AIRTRAIN_AUTO_MIGRATE=1 applies


@fail_fast()
def ingest(name: str, plan: dict[str, Any]) -> list[dict[str, Any]]:
    from airtrain import steps

    spec = spec_for(name)
    return steps.ingest(warehouse_for(spec), spec, _dates(plan), plan["run_id"], landing_root())


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
    as_of = steps.training_as_of(dt.date.fromisoformat(plan["as_of"]))
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


def notify_decision(name: str, decision: dict[str, Any], *, failed: str | None = None) -> list[str]:
    """Alert on a triggered retrain (or, with ``failed``, on a retrain that could not be
    triggered); nothing to say otherwise."""
    from airtrain_airflow.notify import send_alert
    from airtrain_airflow.operators.drift import report_url

    if not decision or not decision.get("trigger"):
        return []
    window = f"window {decision['window_start']}..{decision['window_end']}"
    report = f"Report: {report_url(name, decision.get('report_id'))}"
    details = {k: decision.get(k) for k in (
        "window_end", "decision", "drift_share", "report_id", "retrain_run_id", "model_version")}
    if failed:
        msg = (f"retrain trigger FAILED for {window}: {failed}. Drift: {decision['reason']}. The window is not "
               f"in cooldown: the next window that drifts triggers again (or trigger the retrain by hand). {report}")
        return send_alert(name, "retrain trigger failed", msg, {**details, "error": failed})
    msg = f"retrain triggered for {window} (run {decision['retrain_run_id']}): {decision['reason']}. {report}"
    return send_alert(name, "retrain triggered", msg, details)


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
    from airtrain import monitoring

    from airtrain_airflow.notify import send_alert

    spec = spec_for(name)
    wh = warehouse_for(spec)
    sent: list[str] = []
    for b in monitoring.fairness_alerts_due(wh, spec, window_end):
        msg = (f"fairness disparity past its threshold on realized labels (window ending {window_end}, champion "
               f"v{b['model_version']}): {b['reason']}. Per group: {spec.warehouse.monitoring_schema}."
               f"fairness_metrics (window_end {window_end}, attribute {b['attribute']}).")
        details = {"window_end": str(window_end), "attribute": b["attribute"], "metric": b["metric"],
                   "value": b["value"], "threshold": b["threshold"], "model_version": b["model_version"],
                   "labeled_start": str(b["labeled_start"]), "labeled_end": str(b["labeled_end"]),
                   "n_rows": b["n_rows"]}
        sent += send_alert(name, "fairness disparity", msg, details)
        monitoring.mark_fairness_alerted(wh, spec, window_end, b["attribute"], b["metric"])
    return sent


def record_trigger(name: str, decision: dict[str, Any]) -> list[str]:
    """After ``trigger_retrain``: record on the window what really happened, then alert.

    The retrain run's existence is asked of Airflow itself (the trigger may have created it, or found
    it from an earlier firing/try - it then skips); only then are the run id and the cooldown
    recorded and "retrain triggered" alerted, once per window (a retry after the record but before
    the alert still alerts; a crash between the alert and its mark may repeat it). No run: the trigger failed - nothing
    starts a cooldown and the alert says so."""
    from airtrain import monitoring

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
        monitoring.record_trigger(warehouse_for(spec), spec, window_end, run_id=None, error=error)
        return notify_decision(name, decision, failed=error)
    wh = warehouse_for(spec)
    if not monitoring.record_trigger(wh, spec, window_end, run_id=run_id):
        return []  # recorded and alerted before (a retry, or the window was checked again)
    sent = notify_decision(name, decision)
    monitoring.mark_alerted(wh, spec, window_end)
    return sent


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
                        approval_required=approval,
                        as_of=dt.date.fromisoformat(plan["as_of"]) if plan.get("as_of") else None)
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
                                    approver=approver, comment=comment,
                                    as_of=dt.date.fromisoformat(plan["as_of"]) if plan.get("as_of") else None,
                                    triggered_by=plan["actor"])


@fail_fast()
def score_approved(name: str, plan: dict[str, Any], approved: dict[str, Any]) -> dict[str, Any] | None:
    """After an approved promotion: score the run's date when nobody could score it earlier - there
    was no champion yet (the first model waited for approval), so ``begin_scoring`` skipped it.

    Returns the published partition (the task's asset event names it, so the monitor checks the date),
    or skips when the date already has predictions (the champion of the time scored it) or the
    approved version did not become the champion (a canary, a refusal)."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airtrain import registry, release, scoring

    spec = spec_for(name)
    wh = warehouse_for(spec)
    if not plan.get("as_of"):
        raise AirflowSkipException("no date to score: the run has no date")
    day = dt.date.fromisoformat(plan["as_of"])
    if not approved.get("promoted") or registry.champion_version(wh, spec) != int(approved["version"]):
        raise AirflowSkipException(f"v{approved.get('version')} is not the champion: nothing to score")
    mine = release.published_by_run(wh, spec, day, plan["run_id"])
    if mine is not None:  # a retry after this task's publish committed: announce it again
        return mine
    if release.is_published(wh, spec, day):
        raise AirflowSkipException(f"{day} already has predictions (scored by the champion of the time)")
    return scoring.score_date(wh, spec, day, run_id=plan["run_id"], model=int(approved["version"]))


@fail_fast()
def promotion_hold(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """promotion_hold: hold or release automatic promotions of the pipeline (a person's decision, with a
    reason, in registry.promotion_holds); nothing is trained or scored."""
    from airtrain import registry

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"promotion_hold": plan["promotion_hold"], "dry_run": True}
    return registry.set_promotion_hold(warehouse_for(spec), spec, plan["promotion_hold"], actor=plan["actor"],
                                       reason=plan["reason"], run_id=plan["run_id"])


@fail_fast()
def rollback(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    from airtrain import steps

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"action": "rollback", "dry_run": True, "to_version": plan["rollback_version"]}
    from airtrain import registry, scoring

    wh = warehouse_for(spec)
    # effective for the date this run re-scores (begin_scoring) and every later one
    effective = dt.date.fromisoformat(plan["as_of"]) if plan.get("as_of") else scoring.newest_validated_date(wh, spec)
    return steps.rollback(wh, spec, int(plan["rollback_version"]), run_id=plan["run_id"],
                          actor=plan["actor"], reason=plan["reason"],
                          expected_champion=plan.get("expected_champion", registry.ANY_CHAMPION),
                          as_of=effective)


@fail_fast()
def decide_canary(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """A person graduates or aborts the running canary (canary_action + reason); an abort is alerted."""
    from airtrain import canary

    spec = spec_for(name)
    if plan["dry_run"]:
        return {"decision": plan["canary_action"], "dry_run": True}
    on = dt.date.fromisoformat(plan["as_of"]) if plan.get("as_of") else None
    out = canary.decide_manually(warehouse_for(spec), spec, plan["canary_action"], reason=plan["reason"],
                                 actor=plan["actor"], run_id=plan["run_id"], on=on)
    alert_aborted_canaries(name)
    return out


def alert_aborted_canaries(name: str) -> list[str]:
    """Alert every aborted canary not alerted yet, then record that it was (effect first, record after)."""
    from airtrain import canary

    from airtrain_airflow.notify import send_alert

    spec = spec_for(name)
    wh = warehouse_for(spec)
    sent: list[str] = []
    for r in canary.unalerted_aborts(wh, spec):
        msg = (f"canary of v{r['candidate_version']} aborted ({r['reason']}); the champion v{r['champion_version']} "
               f"keeps every entity. Decided by {r['decided_by']} on {r['decided_on']}; per-day metrics: "
               f"{spec.warehouse.monitoring_schema}.canary_evaluations (rollout_id = {r['id']}).")
        sent += send_alert(name, "canary aborted", msg, {k: str(v) for k, v in r.items()})
        canary.mark_alerted(wh, spec, int(r["id"]))
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
    from airtrain import canary, release

    ctx = get_current_context()
    spec = spec_for(name)
    tz = spec.schedule.timezone
    extras = triggering_extras(ctx)
    if ctx["params"].get("date"):
        ends = [resolve_partition(ctx["params"]["date"], None, tz)]
    elif extras:
        ends = release.dates_from_events(spec.name, extras)
    else:
        ends = [resolve_partition(None, run_instant(ctx), tz)]
    checks = [canary.evaluate(warehouse_for(spec), spec, end, run_id=ctx["run_id"]) for end in ends]
    out = dict(next((c for c in checks if c.get("applied")), checks[-1]))
    out["checks"] = [{"evaluated_on": e.isoformat(), "decision": c.get("decision"), "applied": c.get("applied")}
                     for e, c in zip(ends, checks, strict=True)]
    out["alerts"] = alert_aborted_canaries(name)
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in out.items()}


@fail_fast()
def begin_scoring(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Create the stage table for the run's date (the last date of a range)."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airtrain import scoring

    if plan["dry_run"]:
        raise AirflowSkipException("dry run: no predictions are written")
    if plan.get("mode") == "hold":
        raise AirflowSkipException("a promotion hold run: the champion is unchanged, nothing to score")
    if plan.get("skip"):
        raise AirflowSkipException(plan["skip"])
    spec = spec_for(name)
    wh = warehouse_for(spec)
    if plan.get("as_of"):
        as_of = dt.date.fromisoformat(plan["as_of"])
    else:  # a rollback in a run without a date or logical date re-scores the newest validated day
        as_of = scoring.newest_validated_date(wh, spec)
        if as_of is None:
            raise AirflowSkipException("no predictions: no validated partition to score yet")
    ti = get_current_context()["ti"]
    scoring.drop_orphan_stages(wh, spec, keep_run=plan["run_id"], is_live=lambda run: ti.get_dr_count(
        dag_id=spec.retrain_dag_id, run_ids=[run], states=["queued", "running"]) > 0)
    try:
        from airtrain import canary

        # the champion's target; while a canary runs, both arms' (rollout.strategy: canary)
        return canary.begin(wh, spec, as_of, run_id=plan["run_id"])
    except scoring.NoModelError as exc:
        raise AirflowSkipException(f"no predictions today: {exc}") from exc
