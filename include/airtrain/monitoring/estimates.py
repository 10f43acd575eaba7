"""Estimated performance per monitor window (issue 24): the champion's - and a running canary's
candidate arm's - metrics estimated from the window's scores before any label arrives
(:mod:`airtrain.monitoring.estimation`: CBPE for classifiers, DLE for regressors, with the version's
estimator stored at evaluation, :mod:`airtrain.registry.estimators`), stored in
``<monitoring_schema>.performance_estimates`` with their sampling band; the realized value is filled
in beside each estimate once the window's labels are due (``target.label_delay_days`` after the
window's end), from the version's published predictions and the labels known then.

The estimate assumes the relation between inputs and label is the holdout's (covariate shift only):
the realized-performance trigger stays for concept drift.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain.model.calibration import Calibrator, EstimationError, LossEstimator, model_inputs
from airtrain.model.evaluation import compute_metrics
from airtrain.model.training import features_frame
from airtrain.monitoring.estimation import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Estimate,
    estimate_classification,
    estimate_regression,
    window_seed,
)
from airtrain.monitoring.performance import performance_drop
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, xact_lock

log = logging.getLogger(__name__)

TABLE = "performance_estimates"
DDL = (
    "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, window_start date NOT NULL, window_end date NOT NULL, "
    "model_version integer NOT NULL, role text NOT NULL CHECK (role IN ('champion','candidate')), rollout_id bigint, "
    "metric text NOT NULL, method text NOT NULL, estimate double precision, band_low double precision, "
    "band_high double precision, level double precision NOT NULL, n_rows integer NOT NULL, "
    "outside double precision, baseline double precision, note text NOT NULL DEFAULT '', run_id text, "
    "realized double precision, realized_rows integer, realized_on date, "
    "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, window_end, model_version, metric))")
COMMENT = ("Estimated performance per monitor window before labels (CBPE for classifiers, DLE for regressors): the "
           "champion's (role champion, on the window's sample) and a running canary's candidate (role candidate, on "
           "its arm's rows), each metric with its sampling band (band_low..band_high at level), the version's "
           "evaluation value (baseline), and the realized value on the window's labels once they are due "
           "(realized_on: the date they were read as of). Assumes covariate shift only: P(label | inputs) "
           "unchanged since the version's holdout.")


@dataclass
class WindowEstimate:
    """The estimates of one version on one window (``estimates`` empty: ``reason`` says why)."""

    version: int
    role: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    rollout_id: int | None = None
    reason: str = ""

    def primary_drop(self, spec: PipelineSpec) -> float | None:
        """How much worse the estimated primary metric is than at evaluation (None: not estimated)."""
        m = spec.evaluation.primary_metric
        e, b = self.estimates.get(m), self.baseline.get(m)
        if e is None or b is None:
            return None
        return performance_drop(m, e.value, b)


def estimable(spec: PipelineSpec) -> list[str]:
    """The spec's metrics this task's estimator can estimate, the primary first."""
    allowed = CLASSIFICATION_METRICS if spec.target.task == "binary_classification" else REGRESSION_METRICS
    wanted = [spec.evaluation.primary_metric, *spec.evaluation.metrics]
    return [m for m in dict.fromkeys(wanted) if m in allowed]


def estimate(spec: PipelineSpec, estimator: Calibrator | LossEstimator | None, model: Any, rows: Any, scores: Any, *,
             version: int, role: str, window_end: dt.date, baseline: dict[str, Any],
             rollout_id: int | None = None, reason: str = "") -> WindowEstimate:
    """Estimate ``version``'s metrics on ``rows`` (its ``scores``); never raises for a window that
    cannot be estimated - the result says why (too few rows, no estimator)."""
    out = WindowEstimate(version, role, rollout_id=rollout_id,
                         baseline={k: float(v) for k, v in (baseline or {}).items() if isinstance(v, int | float)})
    if estimator is None:
        out.reason = reason or f"v{version} has no performance estimator"
        return out
    seed = window_seed(spec.name, version, window_end.isoformat())
    try:
        if isinstance(estimator, Calibrator):
            out.estimates = estimate_classification(scores, estimator, estimable(spec), spec.evaluation.threshold,
                                                    seed=seed)
        else:
            X = model_inputs(model, features_frame(rows, spec))
            out.estimates = estimate_regression(X, scores, estimator, estimable(spec), seed=seed)
    except EstimationError as exc:
        out.reason = str(exc)
    return out


def write(wh: Warehouse, spec: PipelineSpec, window: tuple[dt.date, dt.date], results: list[WindowEstimate], *,
          run_id: str) -> None:
    """Replace the window's estimates (one transaction); a realized value already filled in for the same
    version and metric is kept."""
    start, end = window
    table = ident(spec.warehouse.monitoring_schema, TABLE)
    rows = [(spec.name, start, end, r.version, r.role, r.rollout_id, m, e.method, e.value, e.lower, e.upper, e.level,
             e.n_rows, e.outside, r.baseline.get(m), e.note, run_id)
            for r in results for m, e in r.estimates.items()]
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "estimates", spec.name, end.isoformat())
        # what this check no longer estimates (a canary that ended, a metric removed from the spec) goes
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND window_end = %s AND NOT (model_version = "
                            "ANY(%s::integer[]) AND metric = ANY(%s::text[]))").format(table),
                    (spec.name, end, sorted({r[3] for r in rows}), sorted({r[6] for r in rows})))
        if rows:
            execute_values(cur, sql.SQL(
                "INSERT INTO {} (pipeline, window_start, window_end, model_version, role, rollout_id, metric, method, "
                "estimate, band_low, band_high, level, n_rows, outside, baseline, note, run_id) VALUES %s "
                "ON CONFLICT (pipeline, window_end, model_version, metric) DO UPDATE SET window_start = "
                "EXCLUDED.window_start, role = EXCLUDED.role, rollout_id = EXCLUDED.rollout_id, method = "
                "EXCLUDED.method, estimate = EXCLUDED.estimate, band_low = EXCLUDED.band_low, band_high = "
                "EXCLUDED.band_high, level = EXCLUDED.level, n_rows = EXCLUDED.n_rows, outside = EXCLUDED.outside, "
                "baseline = EXCLUDED.baseline, note = EXCLUDED.note, run_id = EXCLUDED.run_id, created_at = now()"
            ).format(table).as_string(cur), rows)


def fill_realized(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, limit: int = 60) -> int:
    """Fill in the realized value of every estimate whose window's labels are due by ``as_of`` (its end +
    ``target.label_delay_days``) and not filled yet: the version's published predictions of the window's
    days joined to the labels known on ``as_of`` (point in time). Returns the windows filled (at most
    ``limit`` per call, oldest first: a long backlog is worked off over the next runs)."""
    import numpy as np

    table = ident(spec.warehouse.monitoring_schema, TABLE)
    due = as_of - dt.timedelta(days=spec.target.label_delay_days)
    ps, pt = spec.table("predictions")
    ls, lt = spec.table("labels")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT window_start, window_end, model_version, array_agg(metric) FROM {} "
                            "WHERE pipeline = %s AND realized_on IS NULL AND window_end <= %s "
                            "GROUP BY 1, 2, 3 ORDER BY 2, 3 LIMIT %s").format(table), (spec.name, due, limit))
        pending = cur.fetchall()
        filled = 0
        for start, end, version, metrics in pending:
            cur.execute(sql.SQL(
                "SELECT p.score, l.{t}::double precision FROM {p} p JOIN {l} l ON l.{k} = p.{k} AND l.{d} = "
                "p.as_of_date WHERE p.model_version = %s AND l.label_available_on <= %s AND l.{t} IS NOT NULL "
                "AND p.as_of_date BETWEEN %s AND %s").format(
                t=ident(spec.target.name), p=ident(ps, pt), l=ident(ls, lt), k=ident(spec.entity_key),
                d=ident(spec.date_column)), (version, as_of, start, end))
            arr = np.asarray(cur.fetchall(), dtype="float64").reshape(-1, 2)
            values = compute_metrics(arr[:, 1], arr[:, 0], list(metrics), spec.evaluation.threshold) if len(arr) else {}
            for m in metrics:
                cur.execute(sql.SQL("UPDATE {} SET realized = %s, realized_rows = %s, realized_on = %s WHERE pipeline "
                                    "= %s AND window_end = %s AND model_version = %s AND metric = %s").format(table),
                            (values.get(m), len(arr), as_of, spec.name, end, version, m))
            filled += 1
    return filled


def list_estimates(wh: Warehouse, spec: PipelineSpec, metric: str | None = None, limit: int = 400
                   ) -> list[dict[str, Any]]:
    """Newest windows first (the UI's trend chart, the replay)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT window_start, window_end, model_version, role, rollout_id, metric, method, estimate, band_low, "
            "band_high, level, n_rows, baseline, note, realized, realized_rows, realized_on FROM {} "
            "WHERE pipeline = %s AND (%s::text IS NULL OR metric = %s) ORDER BY window_end DESC, role, metric "
            "LIMIT %s").format(ident(spec.warehouse.monitoring_schema, TABLE)),
            (spec.name, metric, metric, limit))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
