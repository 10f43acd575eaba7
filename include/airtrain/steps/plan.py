"""The plan of a retrain run: its parameters checked together and its dates decided once, in the spec's
timezone, for every mode (retrain, rollback, canary decision, promotion hold). Every task follows the
plan; a refused combination fails the run before anything is done (:class:`RunRefused`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from airtrain.dates import date_range, parse_date, resolve_partition
from airtrain.errors import PermanentError
from airtrain.spec import PipelineSpec
from airtrain.steps.release import rollback_expectation, rollback_problems
from airtrain.warehouse.connection import Warehouse

log = logging.getLogger(__name__)


class RunRefused(PermanentError, ValueError):
    """The run's parameters are refused; the message lists every problem. Nothing was done."""


def plan_run(warehouse: Callable[[], Warehouse], spec: PipelineSpec, params: dict[str, Any], *, instant: dt.datetime | None, run_id: str,
             actor: str) -> dict[str, Any]:
    """Check the run's ``params`` together (their types were checked by the orchestrator) and decide its
    dates: ``instant`` is when the run is "for" (its logical date, else when it was queued; None: the
    ``date`` param must say). ``actor`` started it (``user:<name>`` or ``airflow:<run type>``); ``warehouse()`` is called only when
    the plan needs the registry (a rollback)."""
    tz = ZoneInfo(spec.schedule.timezone)
    p = dict(params)
    reason = (p.get("reason") or "").strip()
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
        # the rollback is a compare-and-swap against the champion of now (see steps.release.rollback)
        expected, refused = rollback_expectation(warehouse(), spec, int(p["rollback_version"]))
        problems += refused
    rescore = None
    if not problems and manual:
        try:  # the date a rollback (or a canary decision) re-scores; None: the newest validated one (see begin_scoring)
            rescore = resolve_partition(p.get("date"), instant, spec.schedule.timezone).isoformat()
        except ValueError:
            rescore = None
    if not problems and p.get("rollback_version") is not None:  # can it score today's features? (issue 27)
        problems += rollback_problems(warehouse(), spec, int(p["rollback_version"]),
                                      dt.date.fromisoformat(rescore) if rescore else None)
    if problems:
        raise RunRefused("refused the run parameters, nothing was done:\n  - " + "\n  - ".join(problems))
    skip = None
    if dates:
        dates, outside = spec.schedule.with_data(dates)
        if outside:
            skip = None if dates else f"nothing to do: {outside}"
            log.warning("%s", skip or f"left out {outside}")
    return {
        "mode": "rollback" if p.get("rollback_version") is not None else "canary" if p.get("canary_action")
        else "hold" if p.get("promotion_hold") else "retrain",
        "promotion_hold": p.get("promotion_hold") or None,
        "canary_action": p.get("canary_action") or None,
        "dates": [d.isoformat() for d in dates],
        "as_of": dates[-1].isoformat() if dates else rescore,
        "run_date": run_date.isoformat(),
        "run_id": run_id,
        "force_promote": bool(p.get("force_promote")),
        "dry_run": bool(p.get("dry_run")),
        "rollback_version": p.get("rollback_version"),
        "reason": reason or None,
        "actor": actor,
        "trigger_reason": p.get("trigger_reason") or "schedule",
        "force_train": bool(p.get("force_train")),
        "drift_report_id": p.get("drift_report_id") or None,
        "skip": skip,
        **expected,
    }
