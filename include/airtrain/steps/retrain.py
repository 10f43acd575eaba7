"""The retraining lifecycle as plain functions, one per DAG task: prepare → ingest → validate →
train → evaluate → promote (or roll back).

Each step reads what it needs from the warehouse, calls the pure modules (validation, training,
evaluation, gate, artifacts), writes its results back in one transaction keyed by the partition
(so a re-run replaces, never duplicates) and returns a small JSON-able dict for XCom. No Airflow
import here: the Airflow tasks (plugins/airtrain_airflow/runtime.py) only pass the context in.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain import registry
from airtrain.db import Warehouse, ident, xact_lock
from airtrain.faults import failpoint
from airtrain.reports import ReportStore, as_store
from airtrain.spec import PipelineSpec

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------------


def auto_migrate_enabled() -> bool:
    """``AIRTRAIN_AUTO_MIGRATE=1``: the daily ``prepare`` applies the schema itself instead of only
    verifying it (tests and throw-away warehouses; production migrates at deploy time)."""
    return os.environ.get("AIRTRAIN_AUTO_MIGRATE", "").strip().lower() in ("1", "true", "yes")


def prepare(wh: Warehouse, spec: PipelineSpec, *, auto_migrate: bool | None = None) -> dict[str, Any]:
    """Verify the warehouse schema was migrated for this spec (no DDL: that is deploy time, see
    :mod:`airtrain.migrate`); with ``auto_migrate`` (default: ``$AIRTRAIN_AUTO_MIGRATE``) apply it
    instead (tests, throw-away warehouses)."""
    from airtrain.schema import apply_schema, verify_schema

    if not (auto_migrate_enabled() if auto_migrate is None else auto_migrate):
        return verify_schema(wh, spec)
    report = apply_schema(wh, spec)
    return {"schema": "applied", "report": str(report)[:500]}


def ingest(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date], run_id: str, project_root: Any
           ) -> list[dict[str, Any]]:
    from airtrain.ingest import ingest_partition

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
    (:mod:`airtrain.reports`, kind ``validation``, id = the date).

    All partitions are validated and stored first; ``on_stored(summaries)`` is then called (the
    Airflow task records where the reports are, also for a blocked run); then, if any partition was
    blocked, :class:`BatchBlockedError` is raised for the first blocked one, so nothing downstream
    (training, promotion) runs.
    """
    from airtrain.ingest import read_partition
    from airtrain.validation import validate_batch

    store = as_store(reports_root)
    summaries = []
    outcomes = []
    for d in dates:
        raw = read_partition(wh, spec, d)
        outcome = validate_batch(raw, spec, d, run_id, today=today, extra_suites=[
            Path(p) for p in spec.validation.suites])
        # a blocked re-run of a date that passed before keeps that validation (and its report) in force
        report_id = f"{d.isoformat()}.blocked" if outcome.blocked and _passed_before(wh, spec, d) else d.isoformat()
        location = store.save(spec.name, "validation", report_id, outcome.html_report)
        kept = store_validation(wh, spec, d, run_id, outcome, location)
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
    from airtrain import training
    from airtrain.artifacts import dump_model
    from airtrain.ingest import load_labels

    clock = _Clock()
    labels = load_labels(wh, spec, as_of)
    end = last_labeled_date(wh, spec, as_of)
    if end is None:
        raise training.InsufficientDataError(
            f"{spec.name}: no validated rows have labels known on {as_of} yet (labels arrive "
            f"{spec.target.label_delay_days} days later); ingest older partitions first or wait"
        )
    start = end - dt.timedelta(days=spec.training.window_days - 1)
    df = labeled_frame(wh, spec, as_of, start, end)
    clock.lap("read")
    train_df, holdout_df, window = training.split_by_time(df, spec, end)
    from airtrain import evolution

    # a model input without one observed value in the window (a feature newer than the window's days,
    # whose labels have not arrived yet) is not trained on: dropped, recorded in the lineage and the card
    dropped = evolution.unobserved_inputs(train_df, spec)
    if dropped and len(dropped) == len(spec.model_feature_names):
        raise training.InsufficientDataError(
            f"{spec.name}: no model input has an observed value in the training days {window['train_start']}.."
            f"{window['train_end']} ({', '.join(dropped)}); nothing to train on")
    if dropped:
        log.warning("%s: model input(s) %s have no observed value in the training days %s..%s: trained without "
                    "them (recorded in the lineage as inputs_dropped)", spec.name, ", ".join(dropped),
                    window["train_start"], window["train_end"])
    result = training.train(evolution.without_inputs(spec, dropped) if dropped else spec, train_df)
    clock.lap("fit")
    artifact = dump_model(result.model)
    from airtrain.schema import spec_hash

    lineage = {**result.lineage, "window": _jsonable(window), "as_of": as_of.isoformat(), "run_id": run_id,
               "spec_sha256": spec_hash(spec), "model_spec_sha256": evolution.model_spec_sha256(spec),
               "inputs_dropped": [{"feature": c, "reason": f"no observed value in the training days "
                                   f"{window['train_start']}..{window['train_end']}"} for c in dropped],
               "holdout_rows": len(holdout_df), "labels_loaded": labels,
               "library_versions": artifact.versions}
    version = registry.register_version(
        wh, spec, artifact=artifact.data, artifact_sha256=artifact.sha256, artifact_format=artifact.format,
        run_id=run_id, estimator=spec.training.estimator, params={**spec.training.params,
                                                                   **(result.best_params or {})},
        lineage=lineage, spec_text=evolution.spec_text(spec),
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
        import time

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
    rows - only rows the champion was not trained on (:func:`airtrain.gate.fair_window`); store both.

    ``registry.evaluations`` holds the comparison the gate uses (both roles on the same days, overall
    and per slice); the challenger's metrics on its whole holdout go to ``model_versions.metrics``.
    """
    from airtrain.evaluation import evaluate as eval_model
    from airtrain.gate import fair_window, trained_window

    challenger = registry.get_version(wh, spec, version)
    window = challenger.lineage.get("window", {})
    h_start = dt.date.fromisoformat(str(window["holdout_start"]))
    h_end = dt.date.fromisoformat(str(window["holdout_end"]))
    holdout = labeled_frame(wh, spec, as_of, h_start, h_end)
    if holdout.empty:
        raise ValueError(f"{spec.name}: the holdout {h_start}..{h_end} has no labeled rows")
    clock = _Clock()
    model = registry.load_artifact(wh, spec, version)
    clock.lap("load")
    full = eval_model(model, holdout, spec)
    clock.lap("score")
    results = {"challenger": (version, full)}
    models = {"challenger": (version, model)}
    compared_rows = holdout
    compared: tuple[dt.date, dt.date] | None = (h_start, h_end)
    note = refused = None
    champion = registry.champion_version(wh, spec)
    if champion is not None and champion != version:
        compared, note = fair_window((h_start, h_end), trained_window(
            registry.get_version(wh, spec, champion).lineage), champion)
        if compared is None:
            refused, note = note, None
        else:
            rows = holdout
            if compared != (h_start, h_end):
                dates = rows[spec.date_column]
                rows = rows[(dates >= compared[0]) & (dates <= compared[1])].reset_index(drop=True)
                results["challenger"] = (version, eval_model(model, rows, spec))
            champion_model = registry.load_artifact(wh, spec, champion)
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
    with wh.connect() as conn, conn.cursor() as cur:
        store_explain_and_fairness(cur, spec, run_id, (c_start, c_end), audit)
        table = ident(spec.warehouse.registry_schema, "evaluations")
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND run_id = %s").format(table),
                    (spec.name, run_id))
        rows_out = []
        for role, (v, res) in results.items():
            for r in res.rows():
                rows_out.append((spec.name, run_id, v, role, c_start, c_end, r["metric"], r["slice_column"],
                                 str(r["slice_value"]), float(r["value"]), int(r["n_rows"])))
        execute_values(cur, sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, role, holdout_start, holdout_end, metric, slice_column, "
            "slice_value, value, n_rows) VALUES %s").format(table).as_string(cur), rows_out)
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
    registry.update_metrics(wh, spec, version, {"holdout": full.overall,
                                                "holdout_window": [h_start.isoformat(), h_end.isoformat()],
                                                "comparison": comparison, **extra})
    _refresh_card(wh, spec, version)
    return {"version": version, "challenger": full.overall,
            "challenger_compared": results["challenger"][1].overall if "champion" in results else None,
            "champion": results["champion"][1].overall if "champion" in results else None,
            "champion_version": champion if champion != version else None,
            # the champion this evaluation was made against: promotion is a compare-and-swap on it
            "expected_champion": champion,
            "holdout": [h_start.isoformat(), h_end.isoformat()], "holdout_rows": len(holdout),
            "comparison": comparison, **extra, "seconds": clock.laps}


def explain_and_fairness(spec: PipelineSpec, models: dict[str, tuple[int, Any]], holdout, compared_rows
                         ) -> dict[str, Any]:
    """Permutation importance (``explain``) and group fairness (``fairness``) of each role's model on
    the SAME rows (the compared rows when a champion was scored), plus the challenger's fairness on
    its whole holdout (what a fairness gate's threshold applies to). Pure (no I/O)."""
    from airtrain import explain, fairness
    from airtrain.evaluation import predict_scores

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


def store_explain_and_fairness(cur: Any, spec: PipelineSpec, run_id: str, window: tuple[dt.date, dt.date],
                               audit: dict[str, Any]) -> None:
    """Replace the run's rows in registry.feature_importance and registry.fairness (caller's transaction)."""
    reg = spec.warehouse.registry_schema
    for table in ("feature_importance", "fairness"):
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND run_id = %s").format(ident(reg, table)),
                    (spec.name, run_id))
    imp_rows = [(spec.name, run_id, v, role, window[0], window[1], i.feature, i.mean, i.std, n,
                 spec.evaluation.primary_metric, spec.explain.importance_repeats)
                for role, (v, n, imps) in audit["importance_rows"].items() for i in imps]
    if imp_rows:
        execute_values(cur, sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, role, holdout_start, holdout_end, feature, importance_mean, "
            "importance_std, n_rows, scoring, n_repeats) VALUES %s").format(ident(reg, "feature_importance")
                                                                            ).as_string(cur), imp_rows)
    fair_rows = [(spec.name, run_id, v, role, window[0], window[1], r["attribute"], r["group_value"], r["metric"],
                  r["value"], r["n_rows"]) for role, (v, rows) in audit["fairness_rows"].items() for r in rows]
    if fair_rows:
        execute_values(cur, sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, role, holdout_start, holdout_end, attribute, group_value, "
            "metric, value, n_rows) VALUES %s").format(ident(reg, "fairness")).as_string(cur), fair_rows)


def promote(wh: Warehouse, spec: PipelineSpec, evaluation: dict[str, Any], *, run_id: str, actor: str,
            force: bool = False, reason: str | None = None, dry_run: bool = False,
            approval_required: bool = False, as_of: dt.date | None = None) -> dict[str, Any]:
    """Apply the promotion gate; promote (one transaction, logged) when it passes or is forced -
    with ``rollout.strategy: canary`` a passed challenger becomes the canary candidate instead
    (:func:`airtrain.canary.release`; ``as_of``: the date its canary starts scoring).

    The decision recorded in ``model_versions.metrics['gate']`` is the real one: an out-of-order
    version, a version rejected by a rollback, or a comparison that could not be made fairly is
    recorded as refused, with the reason; a passed challenger while automatic promotions are held is
    recorded as held. Every run's decision is also its own row of ``registry.gate_decisions``; a run
    that re-derives the version that already is the champion adds its row there and leaves
    ``metrics.gate`` (the decision that promoted it) as it is.

    An automatic promotion is logged with ``actor = airtrain:gate`` and ``triggered_by = actor`` (who
    started the run); a forced one with the person as both."""
    from airtrain.gate import decide, refused

    version = int(evaluation["version"])
    comparison = evaluation.get("comparison") or {}
    if evaluation.get("expected_champion") == version and registry.champion_version(wh, spec) == version:
        return _already_champion(wh, spec, version, run_id=run_id, dry_run=dry_run)
    if comparison.get("refused"):
        decision = refused(comparison["refused"])
    else:
        decision = decide(evaluation["challenger"], evaluation.get("champion"), list(spec.promotion.gates),
                          evaluation.get("challenger_compared"), primary=spec.evaluation.primary_metric)
        if spec.fairness is not None and spec.fairness.gates:
            from airtrain.gate import fairness_checks, with_checks

            fair = evaluation.get("fairness") or {}
            decision = with_checks(decision, fairness_checks(
                fair.get("challenger"), fair.get("champion"), list(spec.fairness.gates), list(spec.fairness.sensitive),
                fair.get("challenger_compared")), first_model=evaluation.get("champion") is None)
    checks = [_jsonable(c.__dict__ if hasattr(c, "__dict__") else c) for c in decision.checks]
    passed, why_not = decision.passed, decision.reason
    rejected = registry.version_rejection(wh, spec, version)
    stale = None if rejected else _older_than_champion(wh, spec, version)
    if rejected:
        passed, why_not = False, registry.rejected_reason(spec, version, rejected)
    elif stale:
        passed, why_not = False, stale
    gate = {"passed": passed, "reason": why_not, "run_id": run_id, "checks": checks,
            "compared": comparison.get("compared"), "note": comparison.get("note"),
            "champion_version": evaluation.get("champion_version")}
    if rejected:
        gate.update(refused="rejected", metrics_passed=decision.passed, metrics_reason=decision.reason,
                    rejected=_jsonable({k: rejected[k] for k in ("actor", "reason", "run_id", "created_at")}))
    elif stale:
        gate.update(refused="out_of_order", metrics_passed=decision.passed)
    elif comparison.get("refused"):
        gate["refused"] = "no_fair_comparison"
    _record_gate(wh, spec, version, gate, evaluation, refresh=False)  # the card: once the outcome is known
    out: dict[str, Any] = {"version": version, "gate_passed": passed, "gate_reason": why_not,
                           "checks": checks, "promoted": False, "dry_run": dry_run}
    if dry_run:
        out["message"] = f"dry run: version {version} would {'' if passed else 'not '}be promoted"
        _gate_outcome(wh, spec, version, run_id, "dry run: nothing promoted")
        return out
    if not passed and not force:
        out["message"] = f"version {version} not promoted: {why_not}"
        _gate_outcome(wh, spec, version, run_id, "not promoted")
        log.warning(out["message"])
        return out
    hold = registry.promotion_hold(wh, spec)
    if hold is not None and not force:
        # a hold stops automatic promotions (and approval requests, canaries); a person can still force one
        held = registry.held_reason(spec, hold)
        _record_gate(wh, spec, version, {**gate, "held": held}, evaluation, outcome=f"held: {held}")
        out.update(held=True, message=f"version {version} passed the gate but is not promoted: {held}")
        log.warning(out["message"])
        return out
    if approval_required and passed and not force:
        # promotion.approval: required - a person decides (airtrain.release.promote_approved)
        out.update(awaiting_approval=True, champion_version=evaluation.get("champion_version"),
                   message=f"version {version} passed the gate and waits for approval")
        _gate_outcome(wh, spec, version, run_id, "awaiting approval")
        log.info(out["message"])
        return out
    # forced: the gate refused it, or automatic promotions are held - a person decided, with a reason
    forced = force and (not passed or hold is not None)
    action = "force_promote" if forced else "promote"
    why = f"forced by {actor}: {reason} (gate: {why_not})" if forced else why_not
    # compare-and-swap: under the lock, the champion must still be the one this challenger was
    # evaluated against, and (unless forced) the challenger must not be older than it, rejected or held
    from airtrain import canary

    res = canary.release(wh, spec, version, action=action, actor=actor if forced else registry.GATE_ACTOR,
                         reason=why, run_id=run_id,
                         metrics={"challenger": evaluation["challenger"], "champion": evaluation.get("champion"),
                                  "checks": checks, "compared": comparison.get("compared")},
                         expected_champion=evaluation.get("expected_champion", registry.ANY_CHAMPION),
                         newer_only=not forced, as_of=as_of, triggered_by=actor)
    if res.get("refused"):
        kind = res.get("refused_kind") or (
            "champion_changed" if res["refused"].startswith("champion changed") else "out_of_order")
        _record_gate(wh, spec, version, {**gate, "passed": False, "reason": res["refused"], "refused": kind,
                                         "metrics_passed": decision.passed}, evaluation,
                     outcome=f"not promoted: {kind}")
        out.update(gate_passed=False, gate_reason=res["refused"], refused=kind,
                   message=f"version {version} not promoted: {res['refused']}")
        log.warning(out["message"])
        return out
    if res.get("canary"):
        _gate_outcome(wh, spec, version, run_id, f"canary {res['canary']}")
        return _canary_outcome(wh, spec, version, out, res)
    out.update(promoted=True, action=action, **res,
               message=f"version {version} is the champion ({action})")
    registry.record_gate_outcome(wh, spec, run_id=run_id, version=version, outcome=f"promoted ({action})")
    _refresh_card(wh, spec, version)
    if res.get("from_version") not in (None, version):
        _refresh_card(wh, spec, int(res["from_version"]))  # no longer the champion
    log.info(out["message"])
    return out


def _record_gate(wh: Warehouse, spec: PipelineSpec, version: int, gate: dict[str, Any], evaluation: dict[str, Any],
                 outcome: str | None = None, refresh: bool = True) -> None:
    """The run's decision: ``metrics.gate`` (the newest decision on the version), its own row of
    ``registry.gate_decisions``, and the card rebuilt to show it."""
    registry.update_metrics(wh, spec, version, {"gate": gate})
    registry.record_gate_decision(wh, spec, version, gate, run_id=gate["run_id"],
                                  champion_version=evaluation.get("champion_version"), outcome=outcome)
    if refresh:
        _refresh_card(wh, spec, version)


def _gate_outcome(wh: Warehouse, spec: PipelineSpec, version: int, run_id: str, outcome: str) -> None:
    """What became of the run's gate decision; the card rebuilt to show it."""
    registry.record_gate_outcome(wh, spec, run_id=run_id, version=version, outcome=outcome)
    _refresh_card(wh, spec, version)


def _already_champion(wh: Warehouse, spec: PipelineSpec, version: int, *, run_id: str, dry_run: bool
                      ) -> dict[str, Any]:
    """A run that re-derived the champion itself (same data, parameters and code): there is nothing to
    decide. Its own ``registry.gate_decisions`` row says so; ``metrics.gate`` keeps the decision that
    promoted it (it is never rewritten into a "first model" decision that contradicts the log)."""
    since = next((p for p in reversed(registry.promotion_log(wh, spec)) if p["to_version"] == version), None)
    how = (f" since {str(since['created_at'])[:16]} ({since['action']} by {since['actor']})" if since else "")
    reason = (f"v{version} is already the champion{how}; this run re-derived it (same data, parameters and code), so "
              "there is nothing to decide: the decision that promoted it stands")
    gate = {"passed": None, "reason": reason, "run_id": run_id, "checks": [], "already_champion": True}
    registry.record_gate_decision(wh, spec, version, gate, run_id=run_id, champion_version=version,
                                  outcome="already the champion")
    _refresh_card(wh, spec, version)
    log.info("%s: %s", spec.name, reason)
    return {"version": version, "gate_passed": None, "gate_reason": reason, "checks": [], "promoted": False,
            "already_champion": True, "dry_run": dry_run, "message": reason}


def _canary_outcome(wh: Warehouse, spec: PipelineSpec, version: int, out: dict[str, Any], res: dict[str, Any]
                    ) -> dict[str, Any]:
    """The promote step's answer when the passed challenger went to a canary (started, or not
    started because another canary runs); recorded on the version (``metrics.rollout``)."""
    state = res["canary"]
    rollout = res.get("rollout") or {}
    if state == "not_started":
        msg = f"version {version} passed the gate but its canary was {res['message']}"
    else:
        msg = (f"version {version} is the canary candidate for {100 * float(rollout.get('fraction', 0)):.0f}% of the "
               f"entities (rollout {rollout.get('id')}, champion v{rollout.get('champion_version')})")
    registry.update_metrics(wh, spec, version, {"rollout": {"state": state, "rollout_id": rollout.get("id"),
                                                            "message": msg}})
    out.update(promoted=False, canary=state, rollout=rollout, message=msg)
    log.info(msg)
    return out


def _refresh_card(wh: Warehouse, spec: PipelineSpec, version: int) -> None:
    """Rebuild the version's model card (registry.model_cards) after a step changed what it says."""
    from airtrain import modelcard

    modelcard.refresh(wh, spec, version)


def _older_than_champion(wh: Warehouse, spec: PipelineSpec, version: int) -> str | None:
    """Why ``version`` must not replace the champion automatically: it was trained as of an earlier
    date (an out-of-order backfill) - or None."""
    champion = registry.champion_version(wh, spec)
    if champion is None or champion == version:
        return None
    with wh.connect() as conn, conn.cursor() as cur:
        return registry.out_of_order(cur, spec, version, champion)


def rollback(wh: Warehouse, spec: PipelineSpec, version: int, *, run_id: str, actor: str, reason: str,
             expected_champion: int | None | object = registry.ANY_CHAMPION,
             as_of: dt.date | None = None) -> dict[str, Any]:
    """Make an earlier version the champion again (logged as a rollback). The version rolled back
    from is marked rejected in the same transaction (``registry.version_status``: who, when, why): the
    gate refuses it from now on, also when a retrain reproduces it, until ``force_promote`` (or a
    rollback to it) brings it back.

    A compare-and-swap like a promotion: ``expected_champion`` is the champion when the rollback
    was asked for (the run's plan); if another run changed it meanwhile, the rollback is refused
    (:class:`registry.RegistryError`, the reason stored in the version's ``metrics.rollback``).
    A version that cannot score under the current spec (a model input removed from it, or without
    values on ``as_of``, the date it re-scores: default the newest validated one) is refused before
    the champion changes (:class:`airtrain.evolution.VersionCannotScoreError`). The rollback is effective
    for ``as_of`` and every later date (``registry.champion_as_of``)."""
    from airtrain import scoring
    from airtrain.evolution import require_can_score

    target = registry.get_version(wh, spec, version)
    registry.load_artifact(wh, spec, version)  # refuse a version whose artifact is damaged
    require_can_score(wh, spec, version, as_of, what=f"the rollback to v{version}")
    res = registry.promote(wh, spec, target.version, action="rollback", actor=actor,
                           reason=f"rollback by {actor}: {reason}", run_id=run_id,
                           metrics={"metrics": target.metrics.get("holdout", {})},
                           expected_champion=expected_champion, triggered_by=actor,
                           effective_on=as_of or scoring.newest_validated_date(wh, spec))
    if res.get("refused"):
        registry.update_metrics(wh, spec, version, {"rollback": {"refused": res["refused"], "run_id": run_id,
                                                                 "actor": actor}})
        raise registry.RegistryError(f"rollback to v{version} refused: {res['refused']}")
    # the version rolled back from is rejected now (registry.version_status): its card says so
    for v in {version, res.get("from_version")} - {None}:
        _refresh_card(wh, spec, int(v))
    return {"action": "rollback", **res}
