"""Monitoring windows and their decisions: which windows a monitor run checks (the dates its publish
events name, and any published date no run checked), the trigger rule (:func:`decide`: drift, persistence,
cooldown, one retrain at a time), the records in ``monitoring.drift_metrics`` / ``drift_decisions``,
and what the retrain trigger really did (recorded after it happened).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.monitoring.performance import FairnessCheck, _write_fairness
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, xact_lock

log = logging.getLogger(__name__)

DECISIONS = ("no_champion", "insufficient_data", "no_drift", "drift", "drift_alert", "cooldown", "retrain")


@dataclass
class Decision:
    decision: str
    reason: str
    drifted: bool
    signals: list[str] = field(default_factory=list)
    #: a window that would retrain, checked after another window of the same monitor run that does
    #: (YYYY-MM-DD of that one): it waits for that retrain's trigger (:func:`record_trigger`)
    deferred_to: str | None = None

    @property
    def trigger(self) -> bool:
        return self.decision == "retrain"


@dataclass(frozen=True)
class PastWindow:
    window_end: dt.date
    drifted: bool
    decision: str


def decide(spec: PipelineSpec, window_end: dt.date, signals: list[str], history: list[PastWindow],
           insufficient: str | None = None, pending: dt.date | None = None) -> Decision:
    """Apply the spec's trigger rule. ``history``: earlier windows' decisions (any order).

    * ``insufficient`` set → ``insufficient_data`` (small windows never count as drift);
    * no signal → ``no_drift``;
    * fewer than ``persistence`` consecutive drifted windows (each ``window_days`` apart, ending at
      this one) → ``drift``;
    * a retrain was triggered for a window less than ``cooldown_days`` before this one → ``cooldown``;
    * ``pending``: an earlier window checked by the same monitor run decided ``retrain`` (its trigger
      runs after the check) → ``drift``, deferred to it (``deferred_to``): one retrain at a time; it
      becomes ``cooldown`` once that retrain is triggered (:func:`record_trigger`);
    * otherwise → ``retrain``.
    """
    t = spec.monitoring.trigger
    step = dt.timedelta(days=spec.monitoring.window_days)
    if insufficient:
        return Decision("insufficient_data", insufficient, False)
    if not signals:
        return Decision("no_drift", "no drift signal crossed its threshold", False)
    what = "; ".join(signals)
    past = {h.window_end: h for h in history if h.window_end < window_end}
    streak, d = 1, window_end - step
    while streak < t.persistence and d in past and past[d].drifted:
        streak, d = streak + 1, d - step
    if streak < t.persistence:
        return Decision("drift", f"{what} ({streak} of {t.persistence} consecutive drifted windows needed)",
                        True, signals)
    recent = sorted((h.window_end for h in past.values()
                     if h.decision == "retrain" and (window_end - h.window_end).days < t.cooldown_days),
                    reverse=True)
    if recent:
        until = recent[0] + dt.timedelta(days=t.cooldown_days)
        return Decision("cooldown", f"{what}; but a retrain was triggered for window {recent[0]} "
                                    f"(cooldown {t.cooldown_days} days, until {until})", True, signals)
    if pending is not None and pending < window_end:
        return Decision("drift", f"{what} ({streak} consecutive drifted windows); a retrain is due for window "
                                 f"{pending}, checked before this one by the same monitor run: one retrain at a "
                                 "time - this window waits for it (cooldown once it is triggered)", True, signals,
                        deferred_to=pending.isoformat())
    return Decision("retrain", f"{what} ({streak} consecutive drifted windows)", True, signals)


@dataclass
class Metric:
    metric: str
    column: str
    value: float | None
    threshold: float | None
    drifted: bool | None


def retrain_run_id(window_end: dt.date) -> str:
    """The deterministic run id of the retrain triggered for a window (one retrain per window)."""
    return f"drift__{window_end.isoformat()}"


def report_id(spec: PipelineSpec, window_end: dt.date, version: int | None) -> str:
    return f"{spec.name}-{window_end:%Y%m%d}-v{version if version is not None else 0}"


def history(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> list[PastWindow]:
    lookback = window_end - dt.timedelta(days=max(spec.monitoring.trigger.cooldown_days,
                                                  spec.monitoring.trigger.persistence
                                                  * spec.monitoring.window_days) + 1)
    with wh.connect() as conn, conn.cursor() as cur:
        # a 'retrain' whose trigger never created (or found) the run does not start a cooldown; a window
        # whose retrain was triggered keeps its cooldown when it is checked again (its date re-published)
        cur.execute(sql.SQL("SELECT window_end, coalesce(drifted, false), CASE WHEN triggered_run_id IS NOT NULL "
                            "THEN 'retrain' WHEN decision = 'retrain' THEN 'retrain_not_triggered' ELSE decision END "
                            "FROM {} "
                            "WHERE pipeline = %s AND window_end < %s AND window_end >= %s").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, window_end, lookback))
        return [PastWindow(r[0], bool(r[1]), r[2]) for r in cur.fetchall()]


def write_window(wh: Warehouse, spec: PipelineSpec, *, window: tuple[dt.date, dt.date], version: int | None,
           run_id: str, metrics: list[Metric], decision: Decision, rep_id: str | None, rep_path: str | None,
           drift_share: float | None, current_rows: int, details: dict[str, Any],
           fairness: tuple[list[FairnessCheck], dict[str, Any]] | None = None) -> None:
    mon = spec.warehouse.monitoring_schema
    start, end = window
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "monitor", spec.name, end.isoformat())
        if fairness is not None:
            _write_fairness(cur, spec, end, version, run_id, *fairness)
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND window_end = %s").format(
            ident(mon, "drift_metrics")), (spec.name, end))
        if metrics:
            execute_values(cur, sql.SQL(
                "INSERT INTO {} (pipeline, model_version, window_start, window_end, run_id, metric, column_name, "
                "value, threshold, drifted) VALUES %s").format(ident(mon, "drift_metrics")).as_string(cur),
                [(spec.name, version, start, end, run_id, m.metric, m.column, m.value, m.threshold, m.drifted)
                 for m in metrics])
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, window_start, window_end, model_version, run_id, decision, reason, drifted, "
            "drift_share, current_rows, report_id, report_path, triggered_run_id, details) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (pipeline, window_end) DO UPDATE SET window_start = EXCLUDED.window_start, "
            "model_version = EXCLUDED.model_version, run_id = EXCLUDED.run_id, decision = EXCLUDED.decision, "
            "reason = EXCLUDED.reason, drifted = EXCLUDED.drifted, drift_share = EXCLUDED.drift_share, "
            "current_rows = EXCLUDED.current_rows, report_id = EXCLUDED.report_id, "
            "report_path = EXCLUDED.report_path, "
            # triggered_run_id is recorded by record_trigger once the run exists (never here, before the
            # trigger); a retrain triggered for this window stays recorded even if a re-run decides otherwise
            # and an alert-only drift alert sent for this window stays sent (a re-run does not alert again)
            "details = (CASE WHEN EXCLUDED.details ? 'alert' AND {t}.details->'alert' ? 'alerted' THEN "
            "jsonb_set(EXCLUDED.details, '{{alert,alerted}}', {t}.details->'alert'->'alerted') ELSE EXCLUDED.details "
            "END) || jsonb_strip_nulls(jsonb_build_object('trigger', "
            "{t}.details->'trigger')), created_at = now()").format(
            ident(mon, "drift_decisions"), t=ident("drift_decisions")),
            (spec.name, start, end, version, run_id, decision.decision, decision.reason, decision.drifted,
             drift_share, current_rows, rep_id, rep_path, None, json.dumps(details, default=str)))
    failpoint("drift.after_commit")


def record_trigger(wh: Warehouse, spec: PipelineSpec, window_end: dt.date, *, run_id: str | None,
                   error: str | None = None) -> bool:
    """Record what the retrain trigger of a window really did, after it did it.

    ``run_id`` given: Airflow created (or found) that run - it becomes the window's
    ``triggered_run_id`` (which starts the cooldown). ``run_id`` None: the trigger failed - the
    window keeps no run id (so the next window is not in cooldown) and ``details.trigger`` says why.

    Returns True when the window's "retrain triggered" alert is still due (recorded, not yet
    marked sent by :func:`mark_alerted`): once per window, also when the task is retried after
    this commit or the window is checked again."""
    table = ident(spec.warehouse.monitoring_schema, "drift_decisions")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "monitor", spec.name, window_end.isoformat())
        if run_id is not None:
            cur.execute(sql.SQL(
                "UPDATE {} SET triggered_run_id = %s, details = details || jsonb_build_object('trigger', "
                "jsonb_build_object('state', 'triggered', 'run_id', %s::text, 'at', now()::text)) "
                "WHERE pipeline = %s AND window_end = %s AND triggered_run_id IS NULL").format(table),
                (run_id, run_id, spec.name, window_end))
            # the later windows of the same monitor run that waited for this retrain are in its cooldown now
            until = window_end + dt.timedelta(days=spec.monitoring.trigger.cooldown_days)
            cur.execute(sql.SQL(
                "UPDATE {} SET decision = 'cooldown', reason = reason || %s WHERE pipeline = %s AND decision = 'drift' "
                "AND details->>'deferred_to' = %s AND window_end > %s AND window_end < %s").format(table),
                (f"; cooldown: the retrain for window {window_end} was triggered (run {run_id}; cooldown "
                 f"{spec.monitoring.trigger.cooldown_days} days, until {until})", spec.name, window_end.isoformat(),
                 window_end, until))
            cur.execute(sql.SQL("SELECT triggered_run_id, details->'trigger'->>'alerted' FROM {} "
                                "WHERE pipeline = %s AND window_end = %s").format(table), (spec.name, window_end))
            row = cur.fetchone()
            due = row is not None and row[0] == run_id and row[1] is None
        else:
            cur.execute(sql.SQL(
                "UPDATE {} SET details = details || jsonb_build_object('trigger', jsonb_build_object("
                "'state', 'failed', 'error', %s::text, 'at', now()::text)) "
                "WHERE pipeline = %s AND window_end = %s AND triggered_run_id IS NULL").format(table),
                ((error or "the trigger task did not create the run")[:1000], spec.name, window_end))
            due = False
    failpoint("trigger.after_commit")
    return due


def mark_alerted(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> None:
    """The window's "retrain triggered" alert was sent (never again for this window)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "UPDATE {} SET details = jsonb_set(details, '{{trigger,alerted}}', to_jsonb(now()::text)) "
            "WHERE pipeline = %s AND window_end = %s AND details ? 'trigger'").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, window_end))


def windows_to_check(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date], *, run_id: str) -> list[dt.date]:
    """The windows a monitor run checks, oldest first, each once: ``dates`` (the dates its publish
    events name) and every published date between the newest window checked by an earlier run (the
    high-water mark in ``drift_decisions``) and the newest of ``dates`` that was never checked - a
    date whose event went to a monitor run that failed is not skipped. The mark leaves out this run's
    own rows, so a retried check computes the same windows.

    A date published out of order (``max_active_runs`` > 1: an older date published after a newer one
    was checked) changes the persistence count of the windows after it: the windows already checked
    within ``(persistence - 1) * window_days`` after each of ``dates`` that decided ``drift`` are checked
    again, after it (:func:`later_windows_to_recheck`)."""
    if not dates:
        return []
    mon = ident(spec.warehouse.monitoring_schema, "drift_decisions")
    recheck = later_windows_to_recheck(wh, spec, dates)
    if recheck:
        log.info("%s: checking window(s) %s again: date(s) before them were published after they were checked",
                 spec.name, ", ".join(str(d) for d in recheck))
    dates = sorted(set(dates) | set(recheck))
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT max(window_end) FROM {} WHERE pipeline = %s AND run_id IS DISTINCT FROM %s"
                            ).format(mon), (spec.name, run_id))
        mark = cur.fetchone()[0]
        gap: list[dt.date] = []
        if mark is not None and mark < max(dates):
            cur.execute(sql.SQL("SELECT DISTINCT as_of_date FROM {} WHERE as_of_date > %s AND as_of_date < %s").format(
                ident(*spec.table("predictions"))), (mark, max(dates)))
            gap = [r[0] for r in cur.fetchall()]
    if gap:
        log.info("%s: checking published date(s) %s too: no monitor run checked them (newest checked: %s)",
                 spec.name, ", ".join(str(d) for d in sorted(set(gap) - set(dates))) or "-", mark)
    return sorted(set(dates) | set(gap))


def later_windows_to_recheck(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date]) -> list[dt.date]:
    """The windows already decided ``drift`` whose persistence count passes through one of ``dates``
    (within ``(persistence - 1) * window_days`` after it): checked before that date was, they counted it
    as missing. Rows of any run, and ``retrain`` ones not triggered yet: a retried check finds the windows
    its first try re-checked (one may have turned ``retrain``) and checks them again, so its trigger
    task sees the same result."""
    horizon = (spec.monitoring.trigger.persistence - 1) * spec.monitoring.window_days
    if horizon <= 0 or not dates:
        return []
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT DISTINCT w.window_end FROM {} w JOIN unnest(%s::date[]) AS d(day) ON w.window_end > d.day "
            "AND w.window_end <= d.day + %s WHERE w.pipeline = %s AND (w.decision = 'drift' OR (w.decision = 'retrain' "
            "AND w.triggered_run_id IS NULL)) ORDER BY 1").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (list(dates), horizon, spec.name))
        return [r[0] for r in cur.fetchall()]


def list_decisions(wh: Warehouse, spec: PipelineSpec, limit: int = 200) -> list[dict[str, Any]]:
    """Newest decisions first (for the UI page and the demo summary)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT window_start, window_end, model_version, decision, reason, drift_share, current_rows, "
            "report_id, triggered_run_id, created_at FROM {} WHERE pipeline = %s ORDER BY window_end DESC LIMIT %s"
        ).format(ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, limit))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


class NoPublishedDateError(PermanentError, ValueError):
    """An asset-triggered run whose events name no published date of this pipeline."""


def dates_from_events(pipeline: str, extras: list[dict[str, Any]]) -> list[dt.date]:
    """Every date the publish events of ``pipeline`` name, oldest first, each once: the windows an
    asset-triggered monitor run checks. Several events reach one run when they pile up while a monitor
    run is busy (a backfill publishes faster than the monitor checks; Airflow hands the run every event
    since the previous one, ``triggering_asset_events``); each of their dates is checked, in order.
    Fails closed: events without a date of this pipeline raise :class:`NoPublishedDateError`."""
    dates = set()
    for extra in extras:
        if not isinstance(extra, dict) or extra.get("pipeline") != pipeline or not extra.get("date"):
            continue
        try:
            dates.add(dt.date.fromisoformat(str(extra["date"])))
        except ValueError:
            continue
    if not dates:
        raise NoPublishedDateError(
            f"this monitor run of {pipeline} was triggered by asset events that name no published date of "
            f"{pipeline} (extras: {extras!r:.300}); trigger it again with a 'date' (YYYY-MM-DD)")
    return sorted(dates)
