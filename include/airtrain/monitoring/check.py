"""Drift and performance monitoring: the current window against the champion's reference.

One check per (pipeline, window): a window is the ``monitoring.window_days`` days ending at
``window_end``. The check

1. loads the window's validated rows (sampled deterministically to ``monitoring.sample_rows``:
   ordered by ``md5(key | date)``, so the same window always gives the same sample);
2. compares them, column by column, with the champion's **reference** - a deterministic sample of
   the rows it was trained and evaluated on, with its own predictions, stored once per model
   version in ``<monitoring_schema>.<name>_reference`` - using Evidently (per-column method and
   threshold from the spec), plus the drift of the champion's predictions;
3. measures **realized performance**: the champion's stored predictions joined to the labels
   known at ``window_end`` (newest ``window_days`` labeled days), against the primary metric of
   its own evaluation;
4. writes every number to ``<monitoring_schema>.drift_metrics`` (long format), the Evidently HTML
   report to ``<reports>/<name>/drift/<report_id>.html`` and the decision to ``drift_decisions``,
   replacing whatever an earlier attempt of the same window wrote (re-runs never duplicate);
5. decides with :func:`decide`: ``insufficient_data`` / ``no_drift`` / ``drift`` (not yet
   persistent) / ``cooldown`` / ``retrain``.

No Airflow import here; the operator in ``plugins/`` calls :func:`run_check`.
"""

from __future__ import annotations

import datetime as dt
import html as _html
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from airtrain.data.labels import load_labels
from airtrain.model.evaluation import predict_scores
from airtrain.monitoring import alerts, estimates
from airtrain.monitoring.drift import PREDICTION, column_rules, drift_skips, evidently_drift, prediction_rule
from airtrain.monitoring.performance import realized_fairness, realized_performance
from airtrain.monitoring.reference import (
    ensure_reference,
    load_reference,
    load_window,
    reference_under_current_rules,
    under_current_rules,
    window_bounds,
)
from airtrain.monitoring.signals import Measured, alert_only_decision, window_signals
from airtrain.monitoring.windows import (
    Decision,
    Metric,
    decide,
    history,
    report_id,
    retrain_run_id,
    write_window,
)
from airtrain.registry import champions, estimators, rollouts, versions
from airtrain.serving.arms import arm_of
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.reports import ReportStore, as_store, with_title

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Evidently
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# deciding
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------


def report_html(snapshot: Any, spec: PipelineSpec, window: tuple[dt.date, dt.date], version: int, dec: Decision,
                drift_share: float | None) -> str:
    """The Evidently report as a standalone page, with a title and a header saying what it decided."""

    start, end = window
    period = str(end) if start == end else f"{start} … {end}"
    title = f"{spec.name} drift report — {period} — champion v{version}: {dec.decision}"
    share = "" if drift_share is None else f" · drift share {drift_share:.0%}"
    header = ("<div style=\"font-family:system-ui,sans-serif;padding:12px 16px;border-bottom:1px solid #ddd\">"
              f"<h1 style=\"font-size:20px;margin:0 0 4px\">{_html.escape(title)}</h1>"
              f"<div style=\"color:#555\">{_html.escape(dec.reason)}{_html.escape(share)}</div></div>")
    return with_title(snapshot.get_html_str(as_iframe=False), title, header)


def check_windows(wh: Warehouse, spec: PipelineSpec, window_ends: list[dt.date], *, run_id: str,
                  reports_root: Path | ReportStore) -> dict[str, Any]:
    """:func:`run_check` for each window, oldest first (persistence and cooldown read the windows before
    each one). The first window that decides ``retrain`` is the run's trigger; a later one that would
    retrain too waits for it (``drift``, ``deferred_to``; one retrain at a time). Returns the summary of
    the triggering window - else of the newest one - with every window's outcome under ``windows``."""
    results: list[dict[str, Any]] = []
    pending: dt.date | None = None
    for end in sorted(set(window_ends)):
        res = run_check(wh, spec, end, run_id=run_id, reports_root=reports_root, retrain_pending=pending)
        if res.get("trigger") and pending is None:
            pending = end
        results.append(res)
    if not results:
        raise ValueError("no window to check")
    main = next((r for r in results if r.get("trigger")), results[-1])
    windows = [{"window_end": r["window_end"], "decision": r["decision"], "drift_share": r.get("drift_share"),
                "report_id": r.get("report_id"), "model_version": r.get("model_version"),
                "fairness_breach": any(c.get("status") == "breach" for c in r.get("fairness") or [])}
               for r in results]
    return {**main, "windows": windows}


def run_check(wh: Warehouse, spec: PipelineSpec, window_end: dt.date, *, run_id: str,
              reports_root: Path | ReportStore, retrain_pending: dt.date | None = None) -> dict[str, Any]:
    """Measure, store, decide. Returns a small JSON-able summary (the decision and where the report is).
    ``retrain_pending``: an earlier window of the same monitor run decided ``retrain`` (:func:`decide`)."""

    t0 = time.monotonic()
    start, end = window_bounds(spec, window_end)
    m, t = spec.monitoring, spec.monitoring.trigger
    out: dict[str, Any] = {"pipeline": spec.name, "window_start": start.isoformat(), "window_end": end.isoformat(),
                           "retrain_run_id": retrain_run_id(end)}
    # the model that scored the window's end (point in time: the champion for that date, not the live one)
    version = champions.champion_as_of(wh, spec, end)
    past = history(wh, spec, end)
    if version is None:
        dec = Decision("no_champion", f"no champion for {end} yet: nothing to compare with (run the retrain DAG "
                                      "first)", False)
        write_window(wh, spec, window=(start, end), version=None, run_id=run_id, metrics=[], decision=dec, rep_id=None,
               rep_path=None, drift_share=None, current_rows=0, details={})
        return {**out, **_summary(dec), "model_version": None, "report_id": None, "report_path": None}

    current, total = load_window(wh, spec, start, end)
    metrics = [Metric("rows", "", float(total), float(m.min_rows), None),
               Metric("rows_sampled", "", float(len(current)), float(m.sample_rows), None)]
    details: dict[str, Any] = {"rows": total, "rows_sampled": len(current)}
    measured = Measured(rows=total)
    estimated: list[estimates.WindowEstimate] = []
    rep_id = rep_path = None
    notes: list[str] = []  # said in the decision's reason: skipped columns, rule changes (issue 27)
    primary = spec.evaluation.primary_metric
    baseline = (versions.get_version(wh, spec, version).metrics.get("holdout") or {}).get(primary)
    measured.baseline = baseline
    if total >= m.min_rows:
        model = versions.load_artifact(wh, spec, version)
        ensure_reference(wh, spec, version, model)
        reference = load_reference(wh, spec, version)
        # the reference under the CURRENT rules (a tightened rule is not drift), and what changed
        reference, ref_excluded, rule_changes = reference_under_current_rules(wh, spec, version, reference)
        # ... and so is the window: with window_days > 1 its older days were validated under the old rules
        current, window_excluded = under_current_rules(current, spec)
        if window_excluded:
            details["window_rows_excluded"] = window_excluded

        current[PREDICTION] = predict_scores(model, current, spec)
        rules = column_rules(spec)
        p_rule = prediction_rule(spec)
        scores, snapshot = evidently_drift(reference, current, [*rules, p_rule], t.drift_share)
        measured.column_scores = {r.column: scores.get(r.column) for r in rules}
        measured.skipped = drift_skips(reference, current, rules)
        measured.prediction_score = scores.get(PREDICTION)
        details.update(skipped_columns=measured.skipped, reference_rows_excluded=ref_excluded,
                       rule_changes=rule_changes, scores=scores)
        rep_id = report_id(spec, end, version)
        # performance estimated before labels: the champion on the window, a running canary's candidate on its arm
        estimated = _estimate(wh, spec, (start, end), version, model, current)
        e = estimated[0].estimates.get(primary)
        details["estimated"] = {"version": version, "metric": primary, "reason": estimated[0].reason or None}
        if e is not None:
            measured.estimated = {"value": e.value, "lower": e.lower, "upper": e.upper}
            details["estimated"].update(estimate=e.value, band=[e.lower, e.upper], note=e.note)
    # realized performance, as far as labels have arrived (independent of the window's size)
    load_labels(wh, spec, end)
    perf = realized_performance(wh, spec, version, end)
    details["performance"] = perf
    measured.performance = perf
    sig = window_signals(spec, measured, (start, end))
    drift_share = sig.drift_share
    if measured.column_scores is not None:
        for r in rules:
            metrics.append(Metric(f"drift.{r.method}", r.column, scores.get(r.column), r.threshold, sig.flags[r.column]))
        metrics.append(Metric("drift_share", "", sig.drift_share, t.drift_share, sig.share_hit))
        metrics.append(Metric("drifted_columns", "", float(len(sig.drifted_columns)), None, None))
        metrics.append(Metric(f"prediction_drift.{p_rule.method}", PREDICTION, scores.get(PREDICTION),
                              p_rule.threshold, sig.prediction_flag))
        notes += _drift_notes(version, measured.skipped, ref_excluded, rule_changes, sig.drifted_columns)
        details["drifted_columns"] = sig.drifted_columns
        if measured.estimated is not None:
            metrics.append(Metric(f"estimated.{primary}", "", measured.estimated["value"], baseline, None))
        if sig.estimated_drop is not None:
            details["estimated"]["drop"] = sig.estimated_drop
            metrics.append(Metric(f"estimated_drop.{primary}", "", sig.estimated_drop, t.estimated_drop_abs,
                                  sig.estimated_hit))
    if perf.get("rows"):
        metrics.append(Metric("performance_rows", "", float(perf["rows"]), float(m.min_rows), None))
    if sig.realized_drop is not None:
        metrics.append(Metric(f"performance.{primary}", "", perf["value"], baseline, None))
        metrics.append(Metric(f"performance_drop.{primary}", "", sig.realized_drop, t.performance_drop_abs,
                              sig.realized_hit))
        details["performance"].update(baseline=baseline, drop=sig.realized_drop)
    fair_checks, fair_window = realized_fairness(wh, spec, version, end)
    if fair_checks:
        details["fairness"] = {**fair_window, "checks": [c.brief() for c in fair_checks]}
        for c in fair_checks:
            metrics.append(Metric(f"fairness.{c.metric}", c.attribute, c.value, c.threshold,
                                  None if c.status == "not_evaluated" else c.status == "breach"))
            log.log(logging.WARNING if c.status != "ok" else logging.INFO, "%s fairness: %s", spec.name, c.reason)
    dec = decide(spec, end, sig.retrain_signals(spec), past, sig.insufficient, pending=retrain_pending)
    if sig.alert_only(spec) and not sig.insufficient:
        dec = alert_only_decision(spec, end, dec, sig.alert_only(spec), past, details,
                                  last_due=alerts.last_due(wh, spec, end))
    if notes:
        dec.reason += "; " + "; ".join(notes)
    if dec.deferred_to:
        details["deferred_to"] = dec.deferred_to
    if rep_id is not None:
        rep_path = as_store(reports_root).save(spec.name, "drift", rep_id, report_html(
            snapshot, spec, (start, end), version, dec, drift_share))
    if estimated:
        estimates.write(wh, spec, (start, end), estimated, run_id=run_id)
    details["realized_filled"] = estimates.fill_realized(wh, spec, end)
    details["seconds"] = round(time.monotonic() - t0, 3)
    write_window(wh, spec, window=(start, end), version=version, run_id=run_id, metrics=metrics, decision=dec,
           rep_id=rep_id, rep_path=rep_path, drift_share=drift_share, current_rows=total, details=details,
           fairness=(fair_checks, fair_window))
    log.info("%s window %s..%s (champion v%s): %s - %s", spec.name, start, end, version, dec.decision, dec.reason)
    return {**out, **_summary(dec), "model_version": version, "drift_share": drift_share, "rows": total,
            "report_id": rep_id, "report_path": rep_path, "seconds": details["seconds"],
            "fairness": [c.brief() for c in fair_checks]}


def _estimate(wh: Warehouse, spec: PipelineSpec, window: tuple[dt.date, dt.date], version: int, model: Any,
              current: Any) -> list[estimates.WindowEstimate]:
    """The champion's estimate on the window's sample (its scores are ``current[PREDICTION]``) and, while a
    canary runs (started by the window's end), its candidate's on the rows of its arm."""
    end = window[1]
    loaded = estimators.load(wh, spec, version)
    baseline = versions.get_version(wh, spec, version).metrics.get("holdout") or {}
    out = [estimates.estimate(spec, loaded.estimator, model, current, current[PREDICTION].to_numpy(), version=version,
                              role="champion", window_end=end, baseline=baseline, reason=loaded.reason)]
    canary = rollouts.running(wh, spec)
    if canary is not None and canary.candidate_version != version and (canary.started_on or end) <= end:
        arm = current[[arm_of(k, canary.salt, canary.fraction) == "candidate" for k in current[spec.entity_key]]]
        cand = canary.candidate_version
        c_loaded = estimators.load(wh, spec, cand)
        c_model = versions.load_artifact(wh, spec, cand)
        out.append(estimates.estimate(
            spec, c_loaded.estimator, c_model, arm, predict_scores(c_model, arm, spec) if len(arm) else [], version=cand,
            role="candidate", window_end=end, baseline=versions.get_version(wh, spec, cand).metrics.get("holdout") or {},
            rollout_id=canary.id, reason=c_loaded.reason))
    for e in out:
        if e.reason:
            log.info("%s window ending %s: no estimated performance for v%s (%s): %s", spec.name, end, e.version,
                     e.role, e.reason)
    return out


def _drift_notes(version: int, skipped: dict[str, str], excluded: dict[str, int],
                 changes: dict[str, list[str]], drifted: list[str]) -> list[str]:
    """What the decision's reason must say besides the signals: every column not checked and why, and
    the rule changes since the champion was trained (the reference was filtered by the current rules)."""
    notes = []
    if skipped:
        notes.append("not checked: " + ", ".join(f"{c} ({why}{' of v' + str(version) if 'reference' in why else ''})"
                                                 for c, why in skipped.items()))
    changed = {c: ch for c, ch in changes.items() if ch != ["added to the spec"] and ch != ["removed from the spec"]}
    if changed:
        what = "; ".join(f"{c}: {', '.join(ch)}" for c, ch in changed.items())
        notes.append(f"rules changed since v{version} was trained ({what}); its reference is compared under the "
                     f"current rules ({sum(excluded.values())} row exclusions)"
                     + (f" - drifted despite that: {', '.join(c for c in drifted if c in changed)}"
                        if any(c in changed for c in drifted) else ""))
    return notes


def _summary(dec: Decision) -> dict[str, Any]:
    d = asdict(dec)
    d["trigger"] = dec.trigger
    return d
