"""Realized performance and fairness: the champion's published predictions joined to the labels known at
the window's end, against its own evaluation (the primary metric) and the ``fairness.monitor``
thresholds (disparities per sensitive attribute, failing closed: too few labeled rows per group is
``not_evaluated``, never "ok").
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from airtrain.model import fairness
from airtrain.model.evaluation import compute_metrics
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def _newest_labeled_date(cur: Any, spec: PipelineSpec, version: int, window_end: dt.date) -> dt.date | None:
    """The newest date, up to ``window_end``, on which ``version``'s published predictions have labels
    known by ``window_end`` (None: none yet). Realized performance and the fairness monitor both judge
    the ``monitoring.window_days`` labeled days up to it."""
    ps, pt = spec.table("predictions")
    ls, lt = spec.table("labels")
    cur.execute(sql.SQL(
        "SELECT max(p.as_of_date) FROM {p} p JOIN {l} l ON l.{k} = p.{k} AND l.{d} = p.as_of_date "
        "WHERE p.model_version = %s AND l.label_available_on <= %s AND p.as_of_date <= %s").format(
        p=ident(ps, pt), l=ident(ls, lt), k=ident(spec.entity_key), d=ident(spec.date_column)),
        (version, window_end, window_end))
    return cur.fetchone()[0]


def realized_performance(wh: Warehouse, spec: PipelineSpec, version: int, window_end: dt.date) -> dict[str, Any]:
    """The champion's stored predictions joined to labels known on ``window_end``.

    Uses the newest ``monitoring.window_days`` labeled days of that version's predictions.
    """
    import numpy as np

    ps, pt = spec.table("predictions")
    ls, lt = spec.table("labels")
    key, date, target = ident(spec.entity_key), ident(spec.date_column), ident(spec.target.name)
    with wh.connect() as conn, conn.cursor() as cur:
        newest = _newest_labeled_date(cur, spec, version, window_end)
        if newest is None:
            return {"rows": 0}
        oldest = newest - dt.timedelta(days=spec.monitoring.window_days - 1)
        cur.execute(sql.SQL(
            "SELECT p.score, l.{t} FROM {p} p JOIN {l} l ON l.{k} = p.{k} AND l.{d} = p.as_of_date "
            "WHERE p.model_version = %s AND l.label_available_on <= %s AND p.as_of_date BETWEEN %s AND %s").format(
            t=target, p=ident(ps, pt), l=ident(ls, lt), k=key, d=date), (version, window_end, oldest, newest))
        rows = cur.fetchall()
    if not rows:
        return {"rows": 0}
    arr = np.asarray(rows, dtype="float64")
    primary = spec.evaluation.primary_metric
    values = compute_metrics(arr[:, 1], arr[:, 0], [primary], spec.evaluation.threshold)
    return {"rows": len(rows), "start": oldest.isoformat(), "end": newest.isoformat(),
            "metric": primary, "value": values.get(primary)}


def performance_drop(metric: str, realized: float, baseline: float) -> float:
    """How much worse the realized ``metric`` is than at evaluation, in the metric's own units: the fall
    of a higher-is-better metric (roc_auc 0.80 -> 0.72: 0.08), the rise of a lower-is-better one (rmse
    40 -> 80: 40). Negative when it got better. ``monitoring.trigger.performance_drop_abs`` bounds it."""
    return (realized - baseline) if metric in LOWER_IS_BETTER else (baseline - realized)


@dataclass
class FairnessCheck:
    """One ``fairness.monitor`` rule on one attribute, for one window."""

    attribute: str
    metric: str
    threshold: float
    status: str  # ok | breach | not_evaluated
    reason: str
    value: float | None = None
    n_rows: int = 0
    excluded: list[str] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)

    def brief(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "metric": self.metric, "value": self.value,
                "threshold": self.threshold, "status": self.status}


def realized_fairness(wh: Warehouse, spec: PipelineSpec, version: int, window_end: dt.date
                      ) -> tuple[list[FairnessCheck], dict[str, Any]]:
    """``fairness.monitor``: the disparities of the champion's published predictions on the labels
    known at ``window_end`` - the same labeled days as :func:`realized_performance` (the newest
    ``monitoring.window_days`` of them) - with the sensitive attributes from the features table.

    Fails closed: an attribute with fewer than two groups of ``fairness.min_group_rows`` labeled rows
    holding both labels has no disparity, and its rules are ``not_evaluated`` (never ``ok``)."""
    import numpy as np
    import pandas as pd

    fair = spec.fairness
    if fair is None or not fair.monitor:
        return [], {}
    ps, pt = spec.table("predictions")
    ls, lt = spec.table("labels")
    fs, ft = spec.table("features")
    key, date, target = ident(spec.entity_key), ident(spec.date_column), ident(spec.target.name)
    attrs = list(dict.fromkeys(a for r in fair.monitor for a in ([r.attribute] if r.attribute else fair.sensitive)))
    with wh.connect() as conn, conn.cursor() as cur:
        newest = _newest_labeled_date(cur, spec, version, window_end)
        rows: list[tuple] = []
        oldest = None
        if newest is not None:
            oldest = newest - dt.timedelta(days=spec.monitoring.window_days - 1)
            cur.execute(sql.SQL(
                "SELECT p.score, l.{t}, {a} FROM {p} p JOIN {l} l ON l.{k} = p.{k} AND l.{d} = p.as_of_date "
                "JOIN {f} f ON f.{k} = p.{k} AND f.{d} = p.as_of_date WHERE p.model_version = %s "
                "AND l.label_available_on <= %s AND p.as_of_date BETWEEN %s AND %s").format(
                t=target, a=sql.SQL(", ").join(sql.SQL("f.{}").format(ident(c)) for c in attrs),
                p=ident(ps, pt), l=ident(ls, lt), f=ident(fs, ft), k=key, d=date),
                (version, window_end, oldest, newest))
            rows = cur.fetchall()
    window = {"labeled_start": oldest.isoformat() if oldest else None,
              "labeled_end": newest.isoformat() if newest else None, "rows": len(rows)}
    results: dict[str, fairness.AttributeFairness] = {}
    if rows:
        frame = pd.DataFrame(rows, columns=["score", "y", *attrs])
        watched = spec.model_copy(update={"fairness": fair.model_copy(update={"sensitive": attrs})})
        results = fairness.evaluate(frame["y"].to_numpy(dtype=int), frame["score"].to_numpy(dtype=float),
                                    frame, watched)
    checks = []
    for rule in fair.monitor:
        for attr in [rule.attribute] if rule.attribute else fair.sensitive:
            res = results.get(attr)
            value = None if res is None else res.disparities.get(rule.metric)
            if value is not None and not np.isfinite(value):
                value = None
            groups = [] if res is None else res.groups
            n = sum(g["n_rows"] for g in groups)
            excluded = [] if res is None else list(res.excluded)
            if value is None:
                status = "not_evaluated"
                reason = (f"no labeled predictions of v{version} known on {window_end}" if not rows else
                          f"fewer than two groups of {attr} with at least fairness.min_group_rows="
                          f"{fair.min_group_rows} labeled rows and both labels ({n} rows; too small: "
                          f"{', '.join(excluded) or '-'}): not evaluated")
            elif value > rule.threshold:
                status = "breach"
                reason = (f"{rule.metric} of {attr} is {value:.3f} on the labels of {oldest}..{newest} ({n} rows), "
                          f"above fairness.monitor threshold {rule.threshold}")
            else:
                status = "ok"
                reason = (f"{rule.metric} of {attr} is {value:.3f} on {oldest}..{newest} ({n} rows), within "
                          f"{rule.threshold}")
            if excluded and value is not None:
                reason += f" (groups left out, too few labeled rows: {', '.join(excluded)})"
            checks.append(FairnessCheck(attr, rule.metric, rule.threshold, status, reason, value, n, excluded,
                                        groups))
    return checks, window


def _write_fairness(cur: Any, spec: PipelineSpec, end: dt.date, version: int | None, run_id: str,
                    checks: list[FairnessCheck], window: dict[str, Any]) -> None:
    """Replace the window's fairness rows; an alert already sent for a breach that is still a breach
    stays recorded (``alerted_at``), so a re-run of the window does not alert twice."""
    table = ident(spec.warehouse.monitoring_schema, "fairness_metrics")
    cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND window_end = %s AND (attribute, metric) NOT IN "
                        "(SELECT * FROM unnest(%s::text[], %s::text[]))").format(table),
                (spec.name, end, [c.attribute for c in checks], [c.metric for c in checks]))
    for c in checks:
        cur.execute(sql.SQL(
            "INSERT INTO {t} (pipeline, window_end, attribute, metric, model_version, labeled_start, labeled_end, "
            "run_id, value, threshold, status, reason, n_rows, excluded_groups, groups) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (pipeline, window_end, attribute, metric) DO UPDATE SET "
            "model_version = EXCLUDED.model_version, labeled_start = EXCLUDED.labeled_start, "
            "labeled_end = EXCLUDED.labeled_end, run_id = EXCLUDED.run_id, value = EXCLUDED.value, "
            "threshold = EXCLUDED.threshold, status = EXCLUDED.status, reason = EXCLUDED.reason, "
            "n_rows = EXCLUDED.n_rows, excluded_groups = EXCLUDED.excluded_groups, groups = EXCLUDED.groups, "
            "alerted_at = CASE WHEN EXCLUDED.status = 'breach' THEN {n}.alerted_at END, created_at = now()").format(
            t=table, n=ident("fairness_metrics")),
            (spec.name, end, c.attribute, c.metric, version, window.get("labeled_start"), window.get("labeled_end"),
             run_id, c.value, c.threshold, c.status, c.reason, c.n_rows, c.excluded,
             json.dumps([{k: _finite(v) for k, v in g.items()} for g in c.groups], default=str)))


def _finite(v: Any) -> Any:
    """NaN/inf (a TPR of a group without positives) as JSON null: jsonb refuses NaN."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def fairness_alerts_due(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> list[dict[str, Any]]:
    """The window's breaches not alerted yet (attribute, metric, value, threshold, reason)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT attribute, metric, value, threshold, reason, model_version, labeled_start, labeled_end, n_rows "
            "FROM {} WHERE pipeline = %s AND window_end = %s AND status = 'breach' AND alerted_at IS NULL "
            "ORDER BY attribute, metric").format(ident(spec.warehouse.monitoring_schema, "fairness_metrics")),
            (spec.name, window_end))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def mark_fairness_alerted(wh: Warehouse, spec: PipelineSpec, window_end: dt.date, attribute: str, metric: str
                          ) -> None:
    """The breach's alert was sent (after it was sent: never again for this window)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET alerted_at = now() WHERE pipeline = %s AND window_end = %s AND "
                            "attribute = %s AND metric = %s AND status = 'breach'").format(
            ident(spec.warehouse.monitoring_schema, "fairness_metrics")), (spec.name, window_end, attribute, metric))
