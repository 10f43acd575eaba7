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
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain import registry
from airtrain.db import Warehouse, ident, xact_lock
from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.reports import ReportStore, as_store
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec

log = logging.getLogger(__name__)

#: drift methods whose score is a p-value: drift when the score is *below* the threshold
P_VALUE_METHODS = frozenset({"ks", "chisquare"})
#: methods that only make sense for numeric columns
NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
#: each method's usual threshold, used when the spec gives none for a column whose method differs
#: from ``monitoring.default_method``
METHOD_THRESHOLDS = {"psi": 0.1, "ks": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "chisquare": 0.05,
                     "kl_div": 0.1}
NULL_CATEGORY = "__null__"
PREDICTION = "prediction"
DECISIONS = ("no_champion", "insufficient_data", "no_drift", "drift", "cooldown", "retrain")


@dataclass(frozen=True)
class ColumnRule:
    column: str
    kind: str  # "numerical" | "categorical"
    method: str
    threshold: float

    def drifted(self, score: float | None) -> bool | None:
        if score is None:
            return None
        return score < self.threshold if self.method in P_VALUE_METHODS else score >= self.threshold


def column_rules(spec: PipelineSpec) -> list[ColumnRule]:
    """The drift method and threshold of every feature (spec ``monitoring.columns`` over defaults)."""
    m = spec.monitoring
    rules = []
    for f in spec.features:
        kind = "numerical" if f.type in ("int", "float") else "categorical"
        col = m.columns.get(f.name)
        method = col.method if col is not None and col.method else m.default_method
        if kind == "categorical" and method in NUMERIC_ONLY:
            method = "jensenshannon"  # ks/wasserstein need numbers; categories use a distribution distance
        if col is not None and col.threshold is not None:
            threshold = col.threshold
        elif method == m.default_method:
            threshold = m.default_threshold
        else:
            threshold = METHOD_THRESHOLDS[method]
        rules.append(ColumnRule(f.name, kind, method, float(threshold)))
    return rules


def prediction_rule(spec: PipelineSpec) -> ColumnRule:
    m = spec.monitoring
    return ColumnRule(PREDICTION, "numerical", m.default_method, float(m.default_threshold))


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def window_bounds(spec: PipelineSpec, window_end: dt.date) -> tuple[dt.date, dt.date]:
    return window_end - dt.timedelta(days=spec.monitoring.window_days - 1), window_end


def _sample_query(spec: PipelineSpec, table: sql.Composable, extra_cols: list[str], where: sql.Composable
                  ) -> sql.Composable:
    key, date = spec.entity_key, spec.date_column
    cols = sql.SQL(", ").join(ident(c) for c in [key, date, *spec.feature_names, *extra_cols])
    return sql.SQL("SELECT {cols} FROM {t} WHERE {where} ORDER BY md5({k}::text || '|' || {d}::text), {k}, {d} "
                   "LIMIT %(limit)s").format(cols=cols, t=table, where=where, k=ident(key), d=ident(date))


def load_window(wh: Warehouse, spec: PipelineSpec, start: dt.date, end: dt.date):
    """(deterministic sample of the window's validated rows, total rows in the window)."""
    from airtrain.steps import coerce_features, read_frame

    fs, ft = spec.table("features")
    d = ident(spec.date_column)
    where = sql.SQL("{} BETWEEN %(start)s AND %(end)s").format(d)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident(fs, ft), where),
                    {"start": start, "end": end})
        total = int(cur.fetchone()[0])
    df = read_frame(wh, _sample_query(spec, ident(fs, ft), [], where),
                    {"start": start, "end": end, "limit": spec.monitoring.sample_rows})
    return coerce_features(df, spec), total


def ensure_reference(wh: Warehouse, spec: PipelineSpec, version: int, model: Any = None) -> int:
    """Store the reference sample of ``version`` once (its train + holdout window, scored by it).

    Returns the number of reference rows. Idempotent and safe under concurrency: the first writer
    holds a transaction lock per (pipeline, version); later callers find the rows and return.
    """
    from airtrain.evaluation import predict_scores
    from airtrain.steps import coerce_features, read_frame

    ms, mt = spec.table("reference")
    ref = ident(ms, mt)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE model_version = %s").format(ref), (version,))
        have = int(cur.fetchone()[0])
    if have:
        return have
    mv = registry.get_version(wh, spec, version)
    window = mv.lineage.get("window") or {}
    try:
        start = dt.date.fromisoformat(str(window["train_start"]))
        end = dt.date.fromisoformat(str(window["holdout_end"]))
    except (KeyError, ValueError):
        raise registry.RegistryError(
            f"{spec.name} version {version} has no training window in its lineage; cannot build its drift "
            "reference (was it registered by this project?)") from None
    fs, ft = spec.table("features")
    where = sql.SQL("{} BETWEEN %(start)s AND %(end)s").format(ident(spec.date_column))
    df = read_frame(wh, _sample_query(spec, ident(fs, ft), [], where),
                    {"start": start, "end": end, "limit": spec.monitoring.sample_rows})
    if df.empty:
        raise registry.RegistryError(
            f"{spec.name}: no validated rows left in {start}..{end}, the window version {version} was trained "
            "on; its drift reference cannot be built")
    model = model if model is not None else registry.load_artifact(wh, spec, version)
    scores = predict_scores(model, coerce_features(df, spec), spec)
    cols = [spec.entity_key, spec.date_column, *spec.feature_names]
    rows = [(version, *(None if _isnull(v) else v for v in rec), float(s))
            for rec, s in zip(df[cols].itertuples(index=False, name=None), scores, strict=True)]
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "reference", spec.name, str(version))
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE model_version = %s").format(ref), (version,))
        have = int(cur.fetchone()[0])
        if have:
            return have
        execute_values(cur, sql.SQL("INSERT INTO {} (model_version, {}, prediction) VALUES %s").format(
            ref, sql.SQL(", ").join(ident(c) for c in cols)).as_string(cur), rows, page_size=5000)
    log.info("%s: stored a drift reference of %s rows for version %s (%s..%s)", spec.name, len(rows), version,
             start, end)
    return len(rows)


def _isnull(v: Any) -> bool:
    try:
        return v is None or v != v  # NaN
    except (TypeError, ValueError):
        return False


def load_reference(wh: Warehouse, spec: PipelineSpec, version: int):
    from airtrain.steps import coerce_features, read_frame

    ms, mt = spec.table("reference")
    cols = sql.SQL(", ").join(ident(c) for c in [spec.entity_key, spec.date_column, *spec.feature_names, PREDICTION])
    df = read_frame(wh, sql.SQL("SELECT {} FROM {} WHERE model_version = %s ORDER BY {}, {}").format(
        cols, ident(ms, mt), ident(spec.entity_key), ident(spec.date_column)), (version,))
    return coerce_features(df, spec)


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

    from airtrain.evaluation import compute_metrics

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

    from airtrain import fairness

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


# ---------------------------------------------------------------------------------------------
# Evidently
# ---------------------------------------------------------------------------------------------


def _evidently_frame(df, rules: list[ColumnRule]):
    import pandas as pd

    out = {}
    for r in rules:
        s = df[r.column]
        if r.kind == "numerical":
            out[r.column] = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            out[r.column] = s.astype("object").where(s.notna(), NULL_CATEGORY).astype(str)
    return pd.DataFrame(out)


def evidently_drift(reference, current, rules: list[ColumnRule], drift_share: float):
    """Run the Evidently report; returns ({column: score or None}, snapshot)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently telemetry off
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    from airtrain.evolution import drift_skips

    # a column without observed values on either side (a feature newer than the reference) is skipped,
    # not compared as "all NULL" against values (the caller names every skipped column in its decision)
    skips = drift_skips(reference, current, rules)
    usable = [r for r in rules if r.column not in skips]
    skipped = [r for r in rules if r.column in skips]
    ref_df, cur_df = _evidently_frame(reference, usable), _evidently_frame(current, usable)
    definition = DataDefinition(numerical_columns=[r.column for r in usable if r.kind == "numerical"],
                                categorical_columns=[r.column for r in usable if r.kind == "categorical"])
    features = [r for r in usable if r.column != PREDICTION]
    metrics: list[Any] = []
    if features:
        metrics.append(DriftedColumnsCount(
            columns=[r.column for r in features], drift_share=drift_share,
            per_column_method={r.column: r.method for r in features},
            per_column_threshold={r.column: r.threshold for r in features}))
    metrics += [ValueDrift(column=r.column, method=r.method, threshold=r.threshold) for r in usable]
    snapshot = Report(metrics).run(Dataset.from_pandas(cur_df, data_definition=definition),
                                   Dataset.from_pandas(ref_df, data_definition=definition))
    scores: dict[str, float | None] = {r.column: None for r in skipped}
    scores.update(parse_drift_result(snapshot.dict(), usable))
    return scores, snapshot


class DriftResultError(PermanentError, RuntimeError):
    """Evidently's result does not hold what the adapter asked for (its result shape changed?)."""


def _metric_type(m: dict[str, Any]) -> str:
    return str((m.get("config") or {}).get("type", "")).rsplit(":", 1)[-1]


def parse_drift_result(result: dict[str, Any], rules: list[ColumnRule]) -> dict[str, float]:
    """{column: score} from an Evidently ``Snapshot.dict()``, failing closed.

    Requires exactly one ``ValueDrift`` result per rule, with a finite number as its value, and -
    when feature columns (all but :data:`PREDICTION`) were asked for - exactly one
    ``DriftedColumnsCount`` whose drifted count equals the count the per-column scores and
    thresholds give. Anything else raises :class:`DriftResultError`: a library upgrade that changes
    the result's shape fails the check loudly instead of turning every score into "no drift"."""
    import math

    metrics = result.get("metrics") if isinstance(result, dict) else None
    if not isinstance(metrics, list):
        raise DriftResultError(f"the Evidently result has no 'metrics' list (keys: {sorted(result or {})}); "
                               "the installed Evidently's result shape is not the one this adapter knows")
    found: dict[str, list[Any]] = {}
    counts: list[Any] = []
    for m in metrics:
        kind = _metric_type(m)
        if kind == "ValueDrift":
            found.setdefault(str((m.get("config") or {}).get("column")), []).append(m.get("value"))
        elif kind == "DriftedColumnsCount":
            counts.append(m.get("value"))
    scores: dict[str, float] = {}
    problems = []
    for r in rules:
        values = found.get(r.column, [])
        if len(values) != 1:
            problems.append(f"{len(values)} ValueDrift results for column {r.column!r} (expected exactly 1)")
            continue
        v = values[0]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            problems.append(f"the ValueDrift result of column {r.column!r} is {v!r}, not a finite number")
            continue
        scores[r.column] = float(v)
    unknown = sorted(set(found) - {r.column for r in rules})
    if unknown:
        problems.append(f"ValueDrift results for columns that were not asked for: {unknown}")
    features = [r for r in rules if r.column != PREDICTION]
    if features and not problems:
        if len(counts) != 1:
            problems.append(f"{len(counts)} DriftedColumnsCount results (expected exactly 1)")
        else:
            c = counts[0].get("count") if isinstance(counts[0], dict) else None
            ours = sum(1 for r in features if r.drifted(scores[r.column]))
            if isinstance(c, bool) or not isinstance(c, int | float):
                problems.append(f"the DriftedColumnsCount result is {counts[0]!r}, without a numeric 'count'")
            elif int(c) != ours:
                problems.append(f"Evidently counts {int(c)} drifted feature columns, but the per-column scores "
                                f"and thresholds give {ours} (has the meaning of a method's threshold changed?)")
    if problems:
        raise DriftResultError("the Evidently drift result does not match what was asked for, so no drift "
                               "decision is made (check the installed evidently version against "
                               "requirements.txt):\n  - " + "\n  - ".join(problems))
    return scores


# ---------------------------------------------------------------------------------------------
# deciding
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------


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


def _history(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> list[PastWindow]:
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


def _write(wh: Warehouse, spec: PipelineSpec, *, window: tuple[dt.date, dt.date], version: int | None,
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
            "details = EXCLUDED.details || jsonb_strip_nulls(jsonb_build_object('trigger', "
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


def report_html(snapshot: Any, spec: PipelineSpec, window: tuple[dt.date, dt.date], version: int, dec: Decision,
                drift_share: float | None) -> str:
    """The Evidently report as a standalone page, with a title and a header saying what it decided."""
    import html as _html

    from airtrain.reports import with_title

    start, end = window
    period = str(end) if start == end else f"{start} … {end}"
    title = f"{spec.name} drift report — {period} — champion v{version}: {dec.decision}"
    share = "" if drift_share is None else f" · drift share {drift_share:.0%}"
    header = ("<div style=\"font-family:system-ui,sans-serif;padding:12px 16px;border-bottom:1px solid #ddd\">"
              f"<h1 style=\"font-size:20px;margin:0 0 4px\">{_html.escape(title)}</h1>"
              f"<div style=\"color:#555\">{_html.escape(dec.reason)}{_html.escape(share)}</div></div>")
    return with_title(snapshot.get_html_str(as_iframe=False), title, header)


def performance_drop(metric: str, realized: float, baseline: float) -> float:
    """How much worse the realized ``metric`` is than at evaluation, in the metric's own units: the fall
    of a higher-is-better metric (roc_auc 0.80 -> 0.72: 0.08), the rise of a lower-is-better one (rmse
    40 -> 80: 40). Negative when it got better. ``monitoring.trigger.performance_drop_abs`` bounds it."""
    return (realized - baseline) if metric in LOWER_IS_BETTER else (baseline - realized)


def windows_to_check(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date], *, run_id: str) -> list[dt.date]:
    """The windows a monitor run checks, oldest first, each once: ``dates`` (the dates its publish
    events name) and every published date between the newest window checked by an earlier run (the
    high-water mark in ``drift_decisions``) and the newest of ``dates`` that was never checked - a
    date whose event went to a monitor run that failed is not skipped. The mark leaves out this run's
    own rows, so a retried check computes the same windows."""
    if not dates:
        return []
    mon = ident(spec.warehouse.monitoring_schema, "drift_decisions")
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
    from airtrain.ingest import load_labels

    t0 = time.monotonic()
    start, end = window_bounds(spec, window_end)
    m, t = spec.monitoring, spec.monitoring.trigger
    out: dict[str, Any] = {"pipeline": spec.name, "window_start": start.isoformat(), "window_end": end.isoformat(),
                           "retrain_run_id": retrain_run_id(end)}
    # the model that scored the window's end (point in time: the champion for that date, not the live one)
    version = registry.champion_as_of(wh, spec, end)
    history = _history(wh, spec, end)
    if version is None:
        dec = Decision("no_champion", f"no champion for {end} yet: nothing to compare with (run the retrain DAG "
                                      "first)", False)
        _write(wh, spec, window=(start, end), version=None, run_id=run_id, metrics=[], decision=dec, rep_id=None,
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
        model = registry.load_artifact(wh, spec, version)
        ensure_reference(wh, spec, version, model)
        reference = load_reference(wh, spec, version)
        # the reference under the CURRENT rules (a tightened rule is not drift), and what changed
        reference, ref_excluded, rule_changes = _reference_under_current_rules(wh, spec, version, reference)
        from airtrain.evaluation import predict_scores

        current[PREDICTION] = predict_scores(model, current, spec)
        rules = column_rules(spec)
        p_rule = prediction_rule(spec)
        scores, snapshot = evidently_drift(reference, current, [*rules, p_rule], t.drift_share)
        from airtrain.evolution import drift_skips

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
    baseline = (registry.get_version(wh, spec, version).metrics.get("holdout") or {}).get(spec.evaluation.primary_metric)
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
    dec = decide(spec, end, signals, history, insufficient, pending=retrain_pending)
    if notes:
        dec.reason += "; " + "; ".join(notes)
    if dec.deferred_to:
        details["deferred_to"] = dec.deferred_to
    if rep_id is not None:
        rep_path = as_store(reports_root).save(spec.name, "drift", rep_id, report_html(
            snapshot, spec, (start, end), version, dec, drift_share))
    details["seconds"] = round(time.monotonic() - t0, 3)
    _write(wh, spec, window=(start, end), version=version, run_id=run_id, metrics=metrics, decision=dec,
           rep_id=rep_id, rep_path=rep_path, drift_share=drift_share, current_rows=total, details=details,
           fairness=(fair_checks, fair_window))
    log.info("%s window %s..%s (champion v%s): %s - %s", spec.name, start, end, version, dec.decision, dec.reason)
    return {**out, **_summary(dec), "model_version": version, "drift_share": drift_share, "rows": total,
            "report_id": rep_id, "report_path": rep_path, "seconds": details["seconds"],
            "fairness": [c.brief() for c in fair_checks]}


def _reference_under_current_rules(wh: Warehouse, spec: PipelineSpec, version: int, reference):
    """(the reference rows the current row rules accept, rows excluded per feature, the rule changes
    since ``version`` was trained - from the spec stored with it)."""
    from airtrain import evolution

    filtered, excluded = evolution.under_current_rules(reference, spec)
    changes = evolution.rule_changes(evolution.version_spec(wh, spec, version), spec)
    if excluded:
        log.info("%s: drift reference of v%s filtered by the current rules: %s rows excluded (%s)", spec.name,
                 version, len(reference) - len(filtered), excluded)
    return filtered, excluded, changes


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


def list_validations(wh: Warehouse, spec: PipelineSpec, limit: int = 200) -> list[dict[str, Any]]:
    """Newest validated partitions first, with their counts and report (for the UI page)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT partition_date, run_id, rows_total, rows_valid, rows_quarantined, blocked, report_path, "
            "created_at, blocked_attempt FROM {} WHERE pipeline = %s ORDER BY partition_date DESC LIMIT %s"
        ).format(ident(spec.warehouse.monitoring_schema, "validation_runs")), (spec.name, limit))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def list_decisions(wh: Warehouse, spec: PipelineSpec, limit: int = 200) -> list[dict[str, Any]]:
    """Newest decisions first (for the UI page and the demo summary)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT window_start, window_end, model_version, decision, reason, drift_share, current_rows, "
            "report_id, triggered_run_id, created_at FROM {} WHERE pipeline = %s ORDER BY window_end DESC LIMIT %s"
        ).format(ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, limit))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
