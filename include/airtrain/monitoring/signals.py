"""The trigger rule's signals of one window, from what the check measured (pure).

The live check (:mod:`airtrain.monitoring.check`) measures a window - drift scores per column and of
the predictions, realized and estimated performance - and this module turns the measurements into
signals under a spec's ``monitoring.trigger``; :func:`airtrain.monitoring.windows.decide` then applies
persistence and cooldown. The replay (:mod:`airtrain.monitoring.replay`) rebuilds the same
measurements from ``drift_metrics`` and calls the same function with other thresholds, so a replay
with the live thresholds recomputes the live decisions exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from airtrain.monitoring.drift import column_rules, prediction_rule
from airtrain.monitoring.performance import performance_drop
from airtrain.monitoring.windows import Decision, PastWindow
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec


@dataclass
class Measured:
    """What the check measured on one window. ``column_scores`` None: the window was too small to
    compare (no drift measured); ``performance``: realized on the newest labeled days ({value, rows,
    start, end}); ``estimated``: the champion's estimated primary metric ({value, lower, upper})."""

    rows: int
    column_scores: dict[str, float | None] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    prediction_score: float | None = None
    performance: dict[str, Any] | None = None
    baseline: float | None = None
    estimated: dict[str, Any] | None = None


@dataclass
class Signals:
    insufficient: str | None = None
    drift: list[str] = field(default_factory=list)  # feature and prediction drift
    performance: list[str] = field(default_factory=list)  # realized and estimated performance
    flags: dict[str, bool | None] = field(default_factory=dict)
    drifted_columns: list[str] = field(default_factory=list)
    checked: int = 0
    drift_share: float | None = None
    share_hit: bool = False
    prediction_flag: bool | None = None
    realized_drop: float | None = None
    realized_hit: bool | None = None
    estimated_drop: float | None = None
    estimated_hit: bool | None = None

    def retrain_signals(self, spec: PipelineSpec) -> list[str]:
        """The signals that may start a retrain (drift ones only with ``feature_drift: retrain``)."""
        drift = self.drift if spec.monitoring.trigger.feature_drift == "retrain" else []
        return [*drift, *self.performance]

    def alert_only(self, spec: PipelineSpec) -> list[str]:
        return self.drift if spec.monitoring.trigger.feature_drift == "alert" else []


def window_signals(spec: PipelineSpec, w: Measured, window: tuple[Any, Any]) -> Signals:
    m, t = spec.monitoring, spec.monitoring.trigger
    out = Signals()
    primary = spec.evaluation.primary_metric
    worse = "rose" if primary in LOWER_IS_BETTER else "fell"
    if w.rows < m.min_rows:
        out.insufficient = (f"{w.rows} rows in {window[0]}..{window[1]}, fewer than monitoring.min_rows={m.min_rows}: "
                            "too few to tell drift from noise")
    elif w.column_scores is not None:
        rules = column_rules(spec)
        for r in rules:
            flag = r.drifted(w.column_scores.get(r.column))
            out.flags[r.column] = flag
            if flag:
                out.drifted_columns.append(r.column)
        out.checked = len(rules) - len(w.skipped)
        out.drift_share = len(out.drifted_columns) / out.checked if out.checked else 0.0
        out.share_hit = out.checked > 0 and out.drift_share >= t.drift_share
        if out.share_hit:
            out.drift.append(f"{len(out.drifted_columns)} of {out.checked} checked features drifted "
                             f"({out.drift_share:.0%} >= {t.drift_share:.0%}: {', '.join(out.drifted_columns)})")
        critical = [c for c in t.critical_features if c in out.drifted_columns]
        if critical:
            out.drift.append(f"critical feature(s) drifted: {', '.join(critical)}")
        p_rule = prediction_rule(spec)
        out.prediction_flag = p_rule.drifted(w.prediction_score)
        if t.prediction_drift and out.prediction_flag:
            out.drift.append(f"prediction drift ({p_rule.method} {w.prediction_score:.3f})")
        est = w.estimated
        if est is not None and est.get("value") is not None and w.baseline is not None:
            out.estimated_drop = performance_drop(primary, est["value"], w.baseline)
            limit = t.estimated_drop_abs
            out.estimated_hit = None if limit is None else out.estimated_drop >= limit
            if out.estimated_hit:
                band = est.get("lower"), est.get("upper")
                out.performance.append(
                    f"estimated {primary} {worse} by {out.estimated_drop:.3f}, worse (estimated {est['value']:.3f}, "
                    f"band {_fmt(band[0])}..{_fmt(band[1])}, vs {w.baseline:.3f} at evaluation; limit {limit:g}; "
                    "before labels, assuming covariate shift)")
    perf = w.performance or {}
    if perf.get("value") is not None and perf.get("rows", 0) >= m.min_rows and w.baseline is not None:
        out.realized_drop = performance_drop(primary, perf["value"], w.baseline)
        limit = t.performance_drop_abs
        out.realized_hit = None if limit is None else out.realized_drop >= limit
        if out.realized_hit:
            out.performance.append(
                f"{primary} {worse} by {out.realized_drop:.3f}, worse (realized {perf['value']:.3f} on "
                f"{perf.get('start')}..{perf.get('end')} vs {w.baseline:.3f} at evaluation; limit {limit:g} in "
                f"{primary}'s units)")
    return out


def alert_only_decision(spec: PipelineSpec, end: dt.date, dec: Decision, drift_signals: list[str],
                        past: list[PastWindow], details: dict[str, Any], last_due: dt.date | None = None) -> Decision:
    """``monitoring.trigger.feature_drift: alert``: the drift signals are recorded and alerted, never
    retrained on; a window without another signal is ``drift_alert`` (not counted as drifted by
    persistence: only the signals that may retrain are). The alert is due on the first window of a drift
    (the previous window was not ``drift_alert``) and again every ``cooldown_days`` while it lasts
    (``last_due``: the newest earlier window whose alert was due) - a reminder, not a daily alert."""
    what = "; ".join(drift_signals)
    prev = end - dt.timedelta(days=spec.monitoring.window_days)
    continuing = any(h.window_end == prev and h.decision == "drift_alert" for h in past)
    due = not continuing or last_due is None or (end - last_due).days >= spec.monitoring.trigger.cooldown_days
    details["alert"] = {"signals": drift_signals, "due": due,
                        **({"last_alerted_window": last_due.isoformat()} if continuing and last_due else {})}
    earlier = [last_due] if continuing and last_due else []
    if dec.decision == "no_drift":
        return Decision("drift_alert", f"{what} (alert only: monitoring.trigger.feature_drift is alert; no retrain"
                                       f"{f'; alerted for window {earlier[0]}' if earlier and not due else ''})",
                        False, drift_signals)
    dec.reason += f"; alert only (monitoring.trigger.feature_drift: alert): {what}"
    return dec


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:.3f}"
