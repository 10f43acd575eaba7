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
from airtrain.monitoring.drift import PREDICTION, column_rules, drift_skips, evidently_drift, prediction_rule
from airtrain.monitoring.performance import performance_drop, realized_fairness, realized_performance
from airtrain.monitoring.reference import (
    ensure_reference,
    load_reference,
    load_window,
    reference_under_current_rules,
    window_bounds,
)
from airtrain.monitoring.windows import (
    Decision,
    Metric,
    decide,
    history,
    report_id,
    retrain_run_id,
    write_window,
)
from airtrain.registry import champions, versions
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec
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
    signals: list[str] = []
    details: dict[str, Any] = {"rows": total, "rows_sampled": len(current)}
    rep_id = rep_path = None
    drift_share = None
    insufficient = None
    notes: list[str] = []  # said in the decision's reason: skipped columns, rule changes (issue 27)
    if total < m.min_rows:
        insufficient = (f"{total} rows in {start}..{end}, fewer than monitoring.min_rows={m.min_rows}: "
                        "too few to tell drift from noise")
    else:
        model = versions.load_artifact(wh, spec, version)
        ensure_reference(wh, spec, version, model)
        reference = load_reference(wh, spec, version)
        # the reference under the CURRENT rules (a tightened rule is not drift), and what changed
        reference, ref_excluded, rule_changes = reference_under_current_rules(wh, spec, version, reference)

        current[PREDICTION] = predict_scores(model, current, spec)
        rules = column_rules(spec)
        p_rule = prediction_rule(spec)
        scores, snapshot = evidently_drift(reference, current, [*rules, p_rule], t.drift_share)

        skipped = drift_skips(reference, current, rules)
        drifted_cols = []
        for r in rules:
            flag = r.drifted(scores.get(r.column))
            metrics.append(Metric(f"drift.{r.method}", r.column, scores.get(r.column), r.threshold, flag))
            if flag:
                drifted_cols.append(r.column)
        checked = len(rules) - len(skipped)
        drift_share = len(drifted_cols) / checked if checked else 0.0
        share_hit = checked > 0 and drift_share >= t.drift_share
        metrics.append(Metric("drift_share", "", drift_share, t.drift_share, share_hit))
        metrics.append(Metric("drifted_columns", "", float(len(drifted_cols)), None, None))
        if share_hit:
            signals.append(f"{len(drifted_cols)} of {checked} checked features drifted ({drift_share:.0%} >= "
                           f"{t.drift_share:.0%}: {', '.join(drifted_cols)})")
        notes += _drift_notes(version, skipped, ref_excluded, rule_changes, drifted_cols)
        details.update(skipped_columns=skipped, reference_rows_excluded=ref_excluded, rule_changes=rule_changes)
        critical = [c for c in t.critical_features if c in drifted_cols]
        if critical:
            signals.append(f"critical feature(s) drifted: {', '.join(critical)}")
        p_flag = p_rule.drifted(scores.get(PREDICTION))
        metrics.append(Metric(f"prediction_drift.{p_rule.method}", PREDICTION, scores.get(PREDICTION),
                              p_rule.threshold, p_flag))
        if t.prediction_drift and p_flag:
            signals.append(f"prediction drift ({p_rule.method} {scores[PREDICTION]:.3f})")
        details.update(drifted_columns=drifted_cols, scores=scores)
        rep_id = report_id(spec, end, version)
    # realized performance, as far as labels have arrived (independent of the window's size)
    load_labels(wh, spec, end)
    perf = realized_performance(wh, spec, version, end)
    details["performance"] = perf
    baseline = (versions.get_version(wh, spec, version).metrics.get("holdout") or {}).get(spec.evaluation.primary_metric)
    if perf.get("rows"):
        metrics.append(Metric("performance_rows", "", float(perf["rows"]), float(m.min_rows), None))
    if perf.get("value") is not None and perf["rows"] >= m.min_rows and baseline is not None:
        primary = spec.evaluation.primary_metric
        drop = performance_drop(primary, perf["value"], baseline)
        limit = t.performance_drop_abs
        hit = limit is not None and drop >= limit
        metrics.append(Metric(f"performance.{primary}", "", perf["value"], baseline, None))
        metrics.append(Metric(f"performance_drop.{primary}", "", drop, limit, hit if limit is not None else None))
        details["performance"].update(baseline=baseline, drop=drop)
        if hit:
            signals.append(f"{primary} {'rose' if primary in LOWER_IS_BETTER else 'fell'} by {drop:.3f}, worse "
                           f"(realized {perf['value']:.3f} on {perf['start']}..{perf['end']} vs {baseline:.3f} at "
                           f"evaluation; limit {limit:g} in {primary}'s units)")
    fair_checks, fair_window = realized_fairness(wh, spec, version, end)
    if fair_checks:
        details["fairness"] = {**fair_window, "checks": [c.brief() for c in fair_checks]}
        for c in fair_checks:
            metrics.append(Metric(f"fairness.{c.metric}", c.attribute, c.value, c.threshold,
                                  None if c.status == "not_evaluated" else c.status == "breach"))
            log.log(logging.WARNING if c.status != "ok" else logging.INFO, "%s fairness: %s", spec.name, c.reason)
    dec = decide(spec, end, signals, past, insufficient, pending=retrain_pending)
    if notes:
        dec.reason += "; " + "; ".join(notes)
    if dec.deferred_to:
        details["deferred_to"] = dec.deferred_to
    if rep_id is not None:
        rep_path = as_store(reports_root).save(spec.name, "drift", rep_id, report_html(
            snapshot, spec, (start, end), version, dec, drift_share))
    details["seconds"] = round(time.monotonic() - t0, 3)
    write_window(wh, spec, window=(start, end), version=version, run_id=run_id, metrics=metrics, decision=dec,
           rep_id=rep_id, rep_path=rep_path, drift_share=drift_share, current_rows=total, details=details,
           fairness=(fair_checks, fair_window))
    log.info("%s window %s..%s (champion v%s): %s - %s", spec.name, start, end, version, dec.decision, dec.reason)
    return {**out, **_summary(dec), "model_version": version, "drift_share": drift_share, "rows": total,
            "report_id": rep_id, "report_path": rep_path, "seconds": details["seconds"],
            "fairness": [c.brief() for c in fair_checks]}


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
