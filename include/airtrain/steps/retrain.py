"""The retrain DAG's steps up to a registered, evaluated challenger: ingest → validate → train →
evaluate.

Each step reads what it needs from the warehouse, calls the stages (data: ingest, validation,
quarantine, labels; model: training, evaluation, explain, fairness, artifacts; registry: versions,
evaluations, cards), writes its results back in one transaction keyed by the partition (so a re-run
replaces, never duplicates) and returns a small JSON-able dict for XCom.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

from airtrain.data.features import labeled_frame, last_labeled_date, sample_per_date
from airtrain.data.ingest import (
    incomplete_landing_files,
    ingest_partition,
    landing_deadline,
    marker_relpath,
    missing_landing_files,
    source_relpath,
)
from airtrain.data.inwarehouse import validate_partition
from airtrain.data.labels import load_labels
from airtrain.model import calibration, explain, fairness, training
from airtrain.model.artifacts import dump_model
from airtrain.model.evaluation import evaluate as eval_model
from airtrain.model.evaluation import predict_scores
from airtrain.model.gate import fair_window, trained_window
from airtrain.model.training import InsufficientDataError
from airtrain.registry import cards, champions, estimators, evaluations, versions
from airtrain.spec import PipelineSpec, hashing
from airtrain.spec.hashing import spec_hash
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.reports import ReportStore, as_store

__all__ = ["InsufficientDataError", "evaluate", "incomplete_landing_files", "ingest", "landing_deadline", "marker_relpath",
           "missing_landing_files", "source_relpath",
           "train", "training_as_of", "training_requested", "training_skipped", "validate"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------------


def ingest(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date], run_id: str, project_root: Any
           ) -> list[dict[str, Any]]:

    out = []
    for d in dates:
        res = ingest_partition(wh, spec, d, run_id, project_root=project_root)
        log.info("ingested %s rows for %s from %s", res.rows, d, res.source)
        out.append({"date": d.isoformat(), "rows": res.rows, "columns_missing": list(res.columns_missing),
                    "columns_extra": list(res.columns_extra)})
    return out


def validate(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date], run_id: str, *, today: dt.date,
             reports_root: Path | ReportStore, on_stored: Any = None) -> list[dict[str, Any]]:
    """Validate each partition; store valid rows, quarantine, results and an HTML report
    (:mod:`airtrain.warehouse.reports`, kind ``validation``, id = the date).

    All partitions are validated and stored first; ``on_stored(summaries)`` is then called (the
    Airflow task records where the reports are, also for a blocked run); then, if any partition was
    blocked, :class:`BatchBlockedError` is raised for the first blocked one, so nothing downstream
    (training, promotion) runs.
    """

    store = as_store(reports_root)
    summaries = []
    outcomes = []
    for d in dates:
        # in the warehouse: the rules compiled to SQL, GX on a SQL data source, INSERT … SELECT (issue 22)
        saved: dict[str, str] = {}

        def save(report_id: str, text: str, saved: dict[str, str] = saved) -> str:
            saved["location"] = store.save(spec.name, "validation", report_id, text)
            return saved["location"]

        outcome, kept, report_id = validate_partition(
            wh, spec, d, run_id, today=today, extra_suites=[Path(p) for p in spec.validation.suites],
            save_report=save)
        location = saved["location"]
        summary = {"date": d.isoformat(), **outcome.summary(), "report_id": report_id, "report": location,
                   **({"kept": kept} if kept else {})}
        if kept:
            outcome.block_reasons.append(
                f"the validation of {d} in force stays as it was (run {kept['run_id']}: {kept['rows_valid']} valid "
                f"and {kept['rows_quarantined']} quarantined rows, unchanged); this blocked attempt is recorded in "
                f"{spec.warehouse.monitoring_schema}.validation_runs.blocked_attempt")
        log.info("validation %s: %s", d, json.dumps(summary, default=str))
        summaries.append(summary)
        outcomes.append(outcome)
    if on_stored is not None:
        on_stored(summaries)
    for outcome in outcomes:
        outcome.raise_if_blocked()
    return summaries


def training_as_of(partition: dt.date) -> dt.date:
    """The date a run trains as of: its partition date (the last date of a range run), whatever the
    reason it runs - schedule, a person, or the drift monitor (a drift retrain's partition is the
    drifted window's end). Point in time: only rows of dates up to it and labels known on it
    (``label_available_on``) are read, whatever else the warehouse holds by then, so a backfill or a
    re-run of a date trains the same model (same data hash) however late it runs. (A drift retrain
    used to train as of the newest validated day at the moment it ran, so which model scored which
    day of a backfill depended on timing.)"""
    return partition


def train(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, run_id: str) -> dict[str, Any]:
    """Load labels known on ``as_of``, train on the spec's window, register a candidate version."""
    clock = _Clock()
    labels = load_labels(wh, spec, as_of)
    end = last_labeled_date(wh, spec, as_of)
    if end is None:
        raise training.InsufficientDataError(
            f"{spec.name}: no validated rows have labels known on {as_of} yet (labels arrive "
            f"{spec.target.label_delay_days} days later); ingest older partitions first or wait"
        )
    start = end - dt.timedelta(days=spec.training.window_days - 1)
    per_date = sample_per_date(spec)
    df = labeled_frame(wh, spec, as_of, start, end, per_date=per_date)
    clock.lap("read")
    train_df, holdout_df, window = training.split_by_time(df, spec, end)

    # a model input without one observed value in the window (a feature newer than the window's days,
    # whose labels have not arrived yet) is not trained on: dropped, recorded in the lineage and the card
    dropped = training.unobserved_inputs(train_df, spec)
    if dropped and len(dropped) == len(spec.model_feature_names):
        raise training.InsufficientDataError(
            f"{spec.name}: no model input has an observed value in the training days {window['train_start']}.."
            f"{window['train_end']} ({', '.join(dropped)}); nothing to train on")
    if dropped:
        log.warning("%s: model input(s) %s have no observed value in the training days %s..%s: trained without "
                    "them (recorded in the lineage as inputs_dropped)", spec.name, ", ".join(dropped),
                    window["train_start"], window["train_end"])
    result = training.train(training.without_inputs(spec, dropped) if dropped else spec, train_df)
    clock.lap("fit")
    artifact = dump_model(result.model)

    lineage = {**result.lineage, "window": _jsonable(window), "as_of": as_of.isoformat(), "run_id": run_id,
               "spec_sha256": spec_hash(spec), "model_spec_sha256": hashing.model_spec_sha256(spec),
               "inputs_dropped": [{"feature": c, "reason": f"no observed value in the training days "
                                   f"{window['train_start']}..{window['train_end']}"} for c in dropped],
               "holdout_rows": len(holdout_df), "labels_loaded": labels,
               # which rows: the window's labeled rows known on as_of, per date the first per_date by
               # md5(key|date); how many; their hash (the train rows': data_hash; the holdout's below)
               "sample": {"rows_per_date": per_date, "order": "md5(key|date), key", "rows": len(df),
                          "train_rows": len(train_df), "holdout_rows": len(holdout_df),
                          "train_hash": result.data_hash,
                          "holdout_hash": training.data_hash(holdout_df, spec) if len(holdout_df) else None},
               "library_versions": artifact.versions}
    version = versions.register_version(
        wh, spec, artifact=artifact.data, artifact_sha256=artifact.sha256, artifact_format=artifact.format,
        run_id=run_id, estimator=spec.training.estimator, params={**spec.training.params,
                                                                   **(result.best_params or {})},
        lineage=lineage, spec_text=hashing.spec_text(spec),
    )
    clock.lap("store")
    log.info("registered %s version %s (train rows %s, holdout rows %s; seconds %s)", spec.name, version,
             result.train_rows, len(holdout_df), clock.laps)
    return {"version": version, "train_rows": int(result.train_rows), "holdout_rows": len(holdout_df),
            "window": _jsonable(window), "data_hash": result.data_hash, "as_of": as_of.isoformat(),
            "inputs_dropped": dropped, "seconds": clock.laps}


class _Clock:
    """Seconds per phase of a step, for its log line and its XCom (where a run's time goes)."""

    def __init__(self) -> None:
        self._now = time.perf_counter
        self._t = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = self._now()
        self.laps[name] = round(self.laps.get(name, 0.0) + t - self._t, 3)
        self._t = t


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def evaluate(wh: Warehouse, spec: PipelineSpec, version: int, run_id: str, as_of: dt.date) -> dict[str, Any]:
    """Score the challenger on its time-based holdout and compare it with the champion on the SAME
    rows - only rows the champion was not trained on (:func:`airtrain.model.gate.fair_window`); store both.

    ``registry.evaluations`` holds the comparison the gate uses (both roles on the same days, overall
    and per slice); the challenger's metrics on its whole holdout go to ``model_versions.metrics``.
    """
    challenger = versions.get_version(wh, spec, version)
    window = challenger.lineage.get("window", {})
    h_start = dt.date.fromisoformat(str(window["holdout_start"]))
    h_end = dt.date.fromisoformat(str(window["holdout_end"]))
    # the holdout the version was trained beside: the same per-date sample (its lineage says how many)
    sample = challenger.lineage.get("sample") or {}
    holdout = labeled_frame(wh, spec, as_of, h_start, h_end, per_date=sample.get("rows_per_date"))
    if holdout.empty:
        raise ValueError(f"{spec.name}: the holdout {h_start}..{h_end} has no labeled rows")
    clock = _Clock()
    model = versions.load_artifact(wh, spec, version)
    clock.lap("load")
    full = eval_model(model, holdout, spec)
    clock.lap("score")
    results = {"challenger": (version, full)}
    models = {"challenger": (version, model)}
    compared_rows = holdout
    compared: tuple[dt.date, dt.date] | None = (h_start, h_end)
    note = refused = None
    champion = champions.champion_version(wh, spec)
    if champion is not None and champion != version:
        compared, note = fair_window((h_start, h_end), trained_window(
            versions.get_version(wh, spec, champion).lineage), champion)
        if compared is None:
            refused, note = note, None
        else:
            rows = holdout
            if compared != (h_start, h_end):
                dates = rows[spec.date_column]
                rows = rows[(dates >= compared[0]) & (dates <= compared[1])].reset_index(drop=True)
                results["challenger"] = (version, eval_model(model, rows, spec))
            champion_model = versions.load_artifact(wh, spec, champion)
            clock.lap("load")
            results["champion"] = (champion, eval_model(champion_model, rows, spec))
            models["champion"] = (champion, champion_model)
            compared_rows = rows
            clock.lap("score")
        if refused or note:
            log.warning("%s: %s", spec.name, refused or note)
    c_start, c_end = compared or (h_start, h_end)
    audit = explain_and_fairness(spec, models, holdout, compared_rows)
    clock.lap("explain")
    evaluations.store(wh, spec, run_id, (c_start, c_end),
                      {role: (v, res.rows()) for role, (v, res) in results.items()}, audit)
    comparison = {"champion_version": champion if champion != version else None,
                  "compared": [c_start.isoformat(), c_end.isoformat()] if compared and "champion" in results else None,
                  "rows": results["champion"][1].n_rows if "champion" in results else 0,
                  "note": note, "refused": refused}
    extra: dict[str, Any] = {}
    if audit["importance"] is not None:
        extra["importance"] = audit["importance"]
        log.info("%s v%s feature importance vs champion: %s", spec.name, version, audit["importance_line"])
    if audit["fairness"] is not None:
        extra["fairness"] = audit["fairness"]
        log.info("%s v%s fairness: %s", spec.name, version, json.dumps(audit["fairness"], default=str))
    # what the monitor estimates the version's performance with before labels arrive (issue 24)
    fitted = calibration.fit_for_version(model, holdout, spec)
    estimators.store(wh, spec, version, fitted, holdout=(h_start, h_end), run_id=run_id)
    if fitted.error:
        log.warning("%s v%s: no performance estimator: %s", spec.name, version, fitted.error)
    clock.lap("estimator")
    versions.update_metrics(wh, spec, version, {"holdout": full.overall,
                                                "holdout_window": [h_start.isoformat(), h_end.isoformat()],
                                                "comparison": comparison, **extra})
    cards.refresh(wh, spec, version)
    return {"version": version, "challenger": full.overall,
            "challenger_compared": results["challenger"][1].overall if "champion" in results else None,
            "champion": results["champion"][1].overall if "champion" in results else None,
            "champion_version": champion if champion != version else None,
            # the champion this evaluation was made against: promotion is a compare-and-swap on it
            "expected_champion": champion,
            "holdout": [h_start.isoformat(), h_end.isoformat()], "holdout_rows": len(holdout),
            "comparison": comparison, **extra, "estimator": fitted.kind if not fitted.error else None,
            "seconds": clock.laps}


def explain_and_fairness(spec: PipelineSpec, models: dict[str, tuple[int, Any]], holdout, compared_rows
                         ) -> dict[str, Any]:
    """Permutation importance (``explain``) and group fairness (``fairness``) of each role's model on
    the SAME rows (the compared rows when a champion was scored), plus the challenger's fairness on
    its whole holdout (what a fairness gate's threshold applies to). Pure (no I/O)."""

    out: dict[str, Any] = {"importance_rows": {}, "fairness_rows": {}, "importance": None, "fairness": None,
                           "importance_line": ""}
    if spec.explain.importance:
        sample = explain.sample_rows(compared_rows, spec)
        imps = {role: (v, explain.permutation_importances(m, sample, spec)) for role, (v, m) in models.items()}
        for role, (v, imp) in imps.items():
            out["importance_rows"][role] = (v, len(sample), imp)
        cmp = explain.compare(imps["challenger"][1], imps["champion"][1] if "champion" in imps else None)
        cmp.update(rows=len(sample), repeats=spec.explain.importance_repeats,
                   scoring=spec.evaluation.primary_metric,
                   champion_version=imps["champion"][0] if "champion" in imps else None)
        out["importance"] = _jsonable(cmp)
        out["importance_line"] = explain.describe(cmp)
    if spec.fairness is not None:
        y_all = holdout[spec.target.name].to_numpy()
        whole = fairness.evaluate(y_all, predict_scores(models["challenger"][1], holdout, spec), holdout, spec)
        summary: dict[str, Any] = {"challenger": fairness.summary(whole), "champion": None,
                                   "challenger_compared": None}
        y = compared_rows[spec.target.name].to_numpy()
        for role, (v, m) in models.items():
            res = whole if role == "challenger" and "champion" not in models else fairness.evaluate(
                y, predict_scores(m, compared_rows, spec), compared_rows, spec)
            out["fairness_rows"][role] = (v, fairness.rows(res, spec.evaluation.primary_metric))
            if "champion" in models:
                summary["champion" if role == "champion" else "challenger_compared"] = fairness.summary(res)
        summary["excluded_groups"] = {a: r.excluded for a, r in whole.items() if r.excluded}
        out["fairness"] = summary
    return out


def training_requested(spec: PipelineSpec, plan: dict[str, Any]) -> str | None:
    """Why this run trains (None: it only ingests, validates and scores)."""
    if spec.training.cadence == "daily":
        return "training.cadence is daily"
    if plan.get("force_train"):
        return "force_train"
    if (plan.get("trigger_reason") or "schedule") != "schedule":
        return f"triggered: {plan['trigger_reason']}"
    return None


def training_skipped(wh: Warehouse, spec: PipelineSpec, plan: dict[str, Any]) -> str | None:
    """Why this run does not train (None: it trains): ``training.cadence: on_trigger`` and a scheduled
    run, once there is a champion (the first model is always trained)."""
    if training_requested(spec, plan) is not None or champions.champion_version(wh, spec) is None:
        return None
    return ("not retraining: training.cadence is on_trigger and this is a scheduled run (the drift monitor "
            "triggers retraining; or start a run with force_train)")
