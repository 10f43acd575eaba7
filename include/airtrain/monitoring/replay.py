"""Replay the monitor's decisions over stored history with other thresholds (issue 24).

Every window the monitor checked left its measurements in ``drift_metrics`` (drift score per column
and of the predictions, rows, realized and estimated primary metric with the version's evaluation
value) and ``drift_decisions`` (the decision, the skipped columns, the realized window). The replay
rebuilds each window's :class:`~airtrain.monitoring.signals.Measured` from them, applies another
spec's ``monitoring.trigger`` / column thresholds through the same functions the live check uses
(:func:`~airtrain.monitoring.signals.window_signals`, :func:`~airtrain.monitoring.windows.decide`), oldest
window first with its own decisions as history (a retrain it decides counts as triggered: it starts
the cooldown), and says per window what it would have decided beside what was decided.

It reads in one READ ONLY transaction (PostgreSQL refuses any write in it): live tables are never
touched, and the reader role may run it (it reads only the monitoring results and no registry table).

Not replayable, refused with the reason: another drift *method* for a column (the stored score is
the live method's), another ``evaluation.primary_metric``, ``window_days`` or ``min_rows`` above what
was measured... (the first two change what was measured, not how it is judged).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from airtrain.errors import PermanentError
from airtrain.monitoring.drift import PREDICTION, column_rules, prediction_rule
from airtrain.monitoring.signals import Measured, alert_only_decision, window_signals
from airtrain.monitoring.windows import Decision, PastWindow, decide
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


class ReplayError(PermanentError, ValueError):
    """The other spec changes what was measured, not how it is judged: it cannot be replayed."""


@dataclass
class ReplayDay:
    window_end: dt.date
    model_version: int | None
    decided: str
    would: str
    reason: str
    retrain: bool  # the replay would start a retrain for this window
    triggered: bool  # the live monitor did (a recorded retrain run)
    drift_share: float | None = None
    estimated: float | None = None
    band: tuple[float | None, float | None] = (None, None)
    realized: float | None = None  # the window's own realized metric, once its labels were due
    realized_recent: float | None = None  # the live check's realized metric (newest labeled days)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.decided != self.would


def _check_replayable(live: PipelineSpec, other: PipelineSpec) -> None:
    problems = []
    if other.name != live.name:
        problems.append(f"the other spec is for {other.name!r}, not {live.name!r}")
    if other.evaluation.primary_metric != live.evaluation.primary_metric:
        problems.append(f"evaluation.primary_metric {other.evaluation.primary_metric!r} differs from the live "
                        f"{live.evaluation.primary_metric!r}: the realized and estimated values stored are the live one's")
    if other.monitoring.window_days != live.monitoring.window_days:
        problems.append("monitoring.window_days differs: the windows were measured with the live length")
    live_rules = {r.column: r.method for r in column_rules(live)}
    for r in column_rules(other):
        if r.column in live_rules and live_rules[r.column] != r.method:
            problems.append(f"monitoring.columns.{r.column}.method {r.method!r} differs from the live "
                            f"{live_rules[r.column]!r}: the stored score is the live method's (thresholds can change)")
    if prediction_rule(other).method != prediction_rule(live).method:
        problems.append("the prediction drift method differs from the live one")
    if problems:
        raise ReplayError(f"{live.name}: cannot replay these settings: " + "; ".join(problems))


def load_history(wh: Warehouse, spec: PipelineSpec, end: dt.date | None = None) -> dict[str, Any]:
    """Every stored window of the pipeline up to ``end``: decisions, metrics and champion estimates, read
    in one READ ONLY transaction."""
    mon = spec.warehouse.monitoring_schema
    end = end or dt.date.max
    with wh.connect() as conn:
        conn.set_session(readonly=True)  # PostgreSQL refuses every write in this transaction
        with conn.cursor() as cur:
            cur.execute(sql.SQL(
                "SELECT window_start, window_end, model_version, decision, reason, coalesce(drifted, false), "
                "triggered_run_id, drift_share, details FROM {} WHERE pipeline = %s AND window_end <= %s "
                "ORDER BY window_end").format(ident(mon, "drift_decisions")), (spec.name, end))
            decisions = cur.fetchall()
            cur.execute(sql.SQL("SELECT window_end, metric, column_name, value, threshold FROM {} WHERE pipeline = %s "
                                "AND window_end <= %s").format(ident(mon, "drift_metrics")), (spec.name, end))
            metrics = cur.fetchall()
            cur.execute(sql.SQL("SELECT window_end, estimate, band_low, band_high, realized FROM {} WHERE pipeline = %s "
                                "AND window_end <= %s AND role = 'champion' AND metric = %s").format(
                ident(mon, "performance_estimates")), (spec.name, end, spec.evaluation.primary_metric))
            estimates = {r[0]: r[1:] for r in cur.fetchall()}
            cur.execute("SHOW transaction_read_only")
            read_only = cur.fetchone()[0] == "on"
    by_window: dict[dt.date, list[tuple]] = {}
    for r in metrics:
        by_window.setdefault(r[0], []).append(r[1:])
    return {"decisions": decisions, "metrics": by_window, "estimates": estimates, "read_only": read_only}


def measured(spec: PipelineSpec, rows: list[tuple], details: dict[str, Any]) -> Measured:
    """A window's measurements rebuilt from its ``drift_metrics`` rows and ``details``."""
    primary = spec.evaluation.primary_metric
    by = {(m, c): (v, t) for m, c, v, t in rows}
    w = Measured(rows=int(by.get(("rows", ""), (0, None))[0] or 0))
    cols = {c: v for (m, c), (v, _t) in by.items() if m.startswith("drift.") and c}
    if cols or ("drift_share", "") in by:
        w.column_scores = cols
        w.skipped = dict(details.get("skipped_columns") or {})
        w.prediction_score = next((v for (m, c), (v, _t) in by.items() if m.startswith("prediction_drift.")
                                   and c == PREDICTION), None)
    for key in (f"estimated.{primary}", f"performance.{primary}"):
        if key in by and by[key][1] is not None:
            w.baseline = by[key][1]
    if f"estimated.{primary}" in by:
        band = (details.get("estimated") or {}).get("band") or [None, None]
        w.estimated = {"value": by[f"estimated.{primary}"][0], "lower": band[0], "upper": band[1]}
    perf = details.get("performance") or {}
    if perf.get("value") is not None:
        w.performance = perf
        if w.baseline is None:
            w.baseline = perf.get("baseline")
    return w


def replay(wh: Warehouse, live: PipelineSpec, other: PipelineSpec, *, start: dt.date | None = None,
           end: dt.date | None = None, history: dict[str, Any] | None = None) -> list[ReplayDay]:
    """Each stored window from ``start`` to ``end`` re-decided under ``other``'s thresholds, oldest first.
    Windows before ``start`` are history as they were decided live."""
    _check_replayable(live, other)
    h = history if history is not None else load_history(wh, live, end)
    past: list[PastWindow] = []
    out: list[ReplayDay] = []
    last_due: dt.date | None = None  # the newest alert-only window whose alert was due
    for w_start, w_end, version, decided, _reason, drifted, triggered, _share, details in h["decisions"]:
        details = details or {}
        live_past = PastWindow(w_end, bool(drifted), "retrain" if triggered else
                               ("retrain_not_triggered" if decided == "retrain" else decided))
        if start is not None and w_end < start:
            past.append(live_past)
            if decided == "drift_alert" and (details.get("alert") or {}).get("due"):
                last_due = w_end
            continue
        if version is None:  # no champion then: nothing was measured
            dec = Decision(decided, "no champion", False)
            day = ReplayDay(w_end, None, decided, decided, dec.reason, False, bool(triggered))
        else:
            m = measured(other, h["metrics"].get(w_end, []), details)
            sig = window_signals(other, m, (w_start, w_end))
            dec = decide(other, w_end, sig.retrain_signals(other), past, sig.insufficient)
            if sig.alert_only(other) and not sig.insufficient:
                alert: dict[str, Any] = {}
                dec = alert_only_decision(other, w_end, dec, sig.alert_only(other), past, alert, last_due)
                if dec.decision == "drift_alert" and alert["alert"]["due"]:
                    last_due = w_end
            est = h["estimates"].get(w_end)
            day = ReplayDay(w_end, version, decided, dec.decision, dec.reason, dec.trigger, bool(triggered),
                            sig.drift_share, est[0] if est else None, (est[1], est[2]) if est else (None, None),
                            est[3] if est else None, (m.performance or {}).get("value"))
            if decided == "retrain" and not triggered:
                day.notes.append("the live trigger did not start its run (no cooldown followed)")
        past.append(PastWindow(w_end, dec.drifted, dec.decision))
        out.append(day)
    return out


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render(days: list[ReplayDay], metric: str) -> str:
    """A plain-text table, one line per window, and a summary."""
    head = (f"{'window_end':<11} {'v':>3} {'decided':<17} {'would decide':<17} {'retrain':<8} {'drift':>6} "
            f"{'est ' + metric:>13} {'band':>13} {'realized':>9} {'recent':>7}")
    lines = [head, "-" * len(head)]
    for d in days:
        band = "-" if d.band[0] is None else f"{_f(d.band[0])}-{_f(d.band[1])}"
        mark = " *" if d.changed else ""
        lines.append(f"{d.window_end!s:<11} {d.model_version if d.model_version is not None else '-':>3} "
                     f"{d.decided:<17} {d.would + mark:<17} {'yes' if d.retrain else '':<8} "
                     f"{_f(d.drift_share, 2):>6} {_f(d.estimated):>13} {band:>13} {_f(d.realized):>9} "
                     f"{_f(d.realized_recent):>7}" + (f"  ({'; '.join(d.notes)})" if d.notes else ""))
    live = sum(d.triggered for d in days)
    would = sum(d.retrain for d in days)
    changed = sum(d.changed for d in days)
    lines.append("")
    lines.append(f"{len(days)} windows: {changed} decided differently (*); retrains: {live} live, {would} with these "
                 f"settings ({', '.join(str(d.window_end) for d in days if d.retrain) or 'none'}). realized: the "
                 f"window's own {metric} once its labels were due; recent: the live check's realized {metric} on "
                 "the newest labeled days.")
    return "\n".join(lines)
