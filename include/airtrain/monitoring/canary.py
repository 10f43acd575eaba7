"""The monitor's canary decision (``rollout.strategy: canary``): per arm, the realized primary metric on
the labeled rows of the days both arms scored since the start; a seeded bootstrap (each arm resampled
within itself) gives a confidence interval of the *improvement* (candidate - champion, sign flipped
for lower-is-better metrics). Abort when its upper bound is < 0 (worse), graduate when its lower bound
is > -margin, else wait; ``rollout.max_days`` without a decision aborts. Each evaluation is a row of
``monitoring.canary_evaluations``; the decision is applied through the registry
(:func:`airtrain.registry.release.graduate` / :func:`airtrain.registry.rollouts.abort`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from psycopg2 import sql

from airtrain.data.labels import load_labels
from airtrain.faults import failpoint
from airtrain.model.evaluation import compute_metrics
from airtrain.registry import rollouts, status
from airtrain.registry.release import graduate
from airtrain.registry.rollouts import Rollout, abort, running
from airtrain.serving.arms import ARMS
from airtrain.serving.can_score import score_problems
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec, RolloutSpec
from airtrain.warehouse.connection import Warehouse, ident, read_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    decision: str  # wait | graduate | abort
    reason: str
    metric: str
    n_candidate: int
    n_champion: int
    metric_candidate: float | None = None
    metric_champion: float | None = None
    diff: float | None = None  # improvement: candidate - champion (champion - candidate if lower is better)
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = 0.95


def _samples(y: Any, s: Any, metric: str, threshold: float, idx: Any) -> Any:
    """The metric on each bootstrap resample (rows ``idx``, shape (B, n)); vectorized where it can be."""
    import numpy as np

    ys, ss = y[idx], s[idx]
    if metric == "roc_auc":
        from scipy.stats import rankdata

        ranks = rankdata(ss, axis=1)
        pos = ys.sum(axis=1)
        neg = ys.shape[1] - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            return ((ranks * ys).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
    per_row = {
        "accuracy": lambda: ((ss >= threshold).astype(int) == ys).mean(axis=1),
        "brier": lambda: ((ss - ys) ** 2).mean(axis=1),
        "log_loss": lambda: -(ys * np.log(np.clip(ss, 1e-15, 1)) + (1 - ys) * np.log(np.clip(1 - ss, 1e-15, 1))
                              ).mean(axis=1),
        "mae": lambda: np.abs(ss - ys).mean(axis=1),
        "rmse": lambda: np.sqrt(((ss - ys) ** 2).mean(axis=1)),
    }
    if metric in per_row:
        return per_row[metric]()

    return np.array([compute_metrics(ys[i], ss[i], [metric], threshold).get(metric, np.nan) for i in range(len(idx))])


def decide(candidate: tuple[Any, Any], champion: tuple[Any, Any], metric: str, threshold: float,
           rollout: RolloutSpec) -> Decision:
    """The canary decision from the labeled rows of each arm (``(labels, scores)`` arrays). Pure.

    Too few labeled rows in an arm (< ``min_labeled``) → wait. Else a percentile bootstrap, each arm
    resampled with replacement within itself (stratified, ``bootstrap_samples`` times, seeded with
    ``seed``), of the improvement; abort when the upper bound < 0, graduate when the lower bound >
    -margin, else wait."""
    import numpy as np

    yc, sc = (np.asarray(a, dtype="float64") for a in candidate)
    yh, sh = (np.asarray(a, dtype="float64") for a in champion)
    n_c, n_h = len(yc), len(yh)
    base = {"metric": metric, "n_candidate": n_c, "n_champion": n_h, "confidence": rollout.confidence}
    if min(n_c, n_h) < rollout.min_labeled:
        return Decision("wait", f"too few labeled rows: candidate {n_c}, champion {n_h} (rollout.min_labeled = "
                        f"{rollout.min_labeled} per arm)", **base)
    mc = compute_metrics(yc, sc, [metric], threshold).get(metric)
    mh = compute_metrics(yh, sh, [metric], threshold).get(metric)
    if mc is None or mh is None:
        return Decision("wait", f"{metric} cannot be computed yet (e.g. one class only in an arm)", **base)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rng = np.random.default_rng(rollout.seed)
    b = rollout.bootstrap_samples
    boot_c = _samples(yc, sc, metric, threshold, rng.integers(0, n_c, size=(b, n_c)))
    boot_h = _samples(yh, sh, metric, threshold, rng.integers(0, n_h, size=(b, n_h)))
    diffs = sign * (boot_c - boot_h)
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) < b // 2:
        return Decision("wait", f"{metric} undefined on most bootstrap resamples", **base)
    alpha = (1 - rollout.confidence) / 2
    lo, hi = (float(v) for v in np.quantile(diffs, [alpha, 1 - alpha]))
    diff = sign * (mc - mh)
    vals = {"metric_candidate": float(mc), "metric_champion": float(mh), "diff": float(diff), "ci_low": lo,
            "ci_high": hi}
    ci = f"{100 * rollout.confidence:g}% CI of the improvement [{lo:+.4f}, {hi:+.4f}]"
    what = f"{metric}: candidate {mc:.4f} vs champion {mh:.4f} ({n_c} vs {n_h} labeled rows), {ci}"
    if hi < 0:
        return Decision("abort", f"the candidate is worse: {what}", **base, **vals)
    if lo > -rollout.margin:
        bound = "better" if rollout.margin == 0 else f"not worse by more than {rollout.margin:g}"
        return Decision("graduate", f"the candidate is {bound}: {what}", **base, **vals)
    return Decision("wait", f"not conclusive yet: {what}", **base, **vals)


def arm_rows(wh: Warehouse, spec: PipelineSpec, rollout: Rollout, as_of: dt.date):
    """Each arm's predictions since the canary started joined to the labels known on ``as_of``, on the
    days both arms scored (a DataFrame: as_of_date, arm, score, label)."""
    ps, pt = spec.table("predictions")
    ls, lt = spec.table("labels")
    query = sql.SQL(
        "WITH r AS (SELECT p.as_of_date, p.arm, p.score, l.{y}::double precision AS label FROM {p} p JOIN {l} l "
        "ON l.{k} = p.{k} AND l.{d} = p.as_of_date WHERE p.as_of_date BETWEEN %(start)s AND %(as_of)s "
        "AND l.label_available_on <= %(as_of)s AND l.{y} IS NOT NULL AND ((p.arm = 'candidate' AND p.model_version = "
        "%(cand)s) OR (p.arm = 'champion' AND p.model_version = %(champ)s))), "
        "both_arms AS (SELECT as_of_date FROM r GROUP BY 1 HAVING count(DISTINCT arm) = 2) "
        "SELECT r.* FROM r JOIN both_arms USING (as_of_date) ORDER BY 1, 2").format(
        y=ident(spec.target.name), p=ident(ps, pt), l=ident(ls, lt), k=ident(spec.entity_key),
        d=ident(spec.date_column))
    return read_frame(wh, query, {"start": rollout.started_on or dt.date(1970, 1, 1), "as_of": as_of,
                                  "cand": rollout.candidate_version, "champ": rollout.champion_version})


def evaluate(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, run_id: str, actor: str = "airtrain:monitor",
             apply: bool = True) -> dict[str, Any]:
    """The monitor's daily canary check as of ``as_of``: compute the decision, store it in
    ``monitoring.canary_evaluations`` (a re-run of the date replaces its row) and apply it (graduate
    / abort; ``max_days`` since the start without a decision aborts). No running canary: nothing."""
    rollout = running(wh, spec)
    if rollout is None:
        return {"decision": None, "reason": "no canary is running"}
    if rollout.started_on is not None and as_of < rollout.started_on:  # an older date published again
        return {"decision": None, "reason": f"{as_of} is before the canary started ({rollout.started_on})",
                "rollout_id": rollout.id}

    load_labels(wh, spec, as_of)  # the labels known on as_of (idempotent; the drift check beside does it too)
    df = arm_rows(wh, spec, rollout, as_of)
    arms = {a: df[df["arm"] == a] for a in ARMS}
    d = decide((arms["candidate"]["label"].to_numpy(), arms["candidate"]["score"].to_numpy()),
               (arms["champion"]["label"].to_numpy(), arms["champion"]["score"].to_numpy()),
               spec.evaluation.primary_metric, spec.evaluation.threshold, spec.rollout)
    days = (as_of - rollout.started_on).days + 1 if rollout.started_on else None
    if d.decision == "graduate":

        hold = status.promotion_hold(wh, spec)
        problems = score_problems(wh, spec, rollout.candidate_version, as_of)
        if problems:  # the spec changed under the canary: as the champion it would fail every score shard
            d = Decision(**{**asdict(d), "decision": "abort", "reason": (
                f"would graduate ({d.reason}), but v{rollout.candidate_version} cannot score under the current "
                f"spec: {'; '.join(problems)}")})
        elif hold is not None:  # a graduation is an automatic promotion: it waits while promotions are held
            d = Decision(**{**asdict(d), "decision": "wait",
                            "reason": f"would graduate ({d.reason}), but {status.held_reason(spec, hold)}"})
    if d.decision == "wait" and days is not None and days > spec.rollout.max_days:
        d = Decision(**{**asdict(d), "decision": "abort",
                        "reason": f"no decision within rollout.max_days = {spec.rollout.max_days} days ({d.reason})"})
    first = df["as_of_date"].min() if len(df) else None
    last = df["as_of_date"].max() if len(df) else None
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, rollout_id, evaluated_on, candidate_version, champion_version, metric, first_day, "
            "last_day, days, n_candidate, n_champion, metric_candidate, metric_champion, diff, ci_low, ci_high, "
            "confidence, decision, reason, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s) ON CONFLICT (pipeline, rollout_id, evaluated_on) DO UPDATE SET "
            "first_day = EXCLUDED.first_day, last_day = EXCLUDED.last_day, days = EXCLUDED.days, "
            "n_candidate = EXCLUDED.n_candidate, n_champion = EXCLUDED.n_champion, "
            "metric_candidate = EXCLUDED.metric_candidate, metric_champion = EXCLUDED.metric_champion, "
            "diff = EXCLUDED.diff, ci_low = EXCLUDED.ci_low, ci_high = EXCLUDED.ci_high, "
            "confidence = EXCLUDED.confidence, decision = EXCLUDED.decision, reason = EXCLUDED.reason, "
            "run_id = EXCLUDED.run_id, created_at = now()").format(
            ident(spec.warehouse.monitoring_schema, "canary_evaluations")),
            (spec.name, rollout.id, as_of, rollout.candidate_version, rollout.champion_version, d.metric, first, last,
             days, d.n_candidate, d.n_champion, d.metric_candidate, d.metric_champion, d.diff, d.ci_low, d.ci_high,
             d.confidence, d.decision, d.reason, run_id))
    out = {**asdict(d), "rollout_id": rollout.id, "candidate_version": rollout.candidate_version,
           "champion_version": rollout.champion_version, "evaluated_on": as_of.isoformat(), "days": days,
           "applied": False}
    log.info("%s canary v%s vs v%s as of %s: %s - %s", spec.name, rollout.candidate_version,
             rollout.champion_version, as_of, d.decision, d.reason)
    if not apply or d.decision == "wait":
        return out
    if d.decision == "graduate":  # as_of was scored by both arms: the candidate scores alone from the next day
        graduate(wh, spec, rollout, reason=d.reason, actor=actor, run_id=run_id, decided_on=as_of,
                 metrics=json.loads(json.dumps(asdict(d), default=str)), effective_on=as_of + dt.timedelta(days=1))
    else:
        abort(wh, spec, rollout, reason=d.reason, actor=actor, run_id=run_id, decided_on=as_of,
              ends_on=as_of + dt.timedelta(days=1))  # the date was scored with both arms
    failpoint("canary.after_commit")  # a retry finds no running canary: nothing is decided or applied twice
    out["applied"] = True
    return out


def list_rollouts(wh: Warehouse, spec: PipelineSpec, limit: int = 20) -> list[dict[str, Any]]:
    """The newest rollouts, running ones first (:func:`airtrain.registry.rollouts.list_rollouts`), each with
    its newest row of ``monitoring.canary_evaluations`` (``last_check``, or None) - for the UI page."""
    rows = rollouts.list_rollouts(wh, spec, limit)
    if not rows:
        return rows
    with wh.connect() as conn, conn.cursor() as cur:
        for r in rows:
            cur.execute(sql.SQL(
                "SELECT evaluated_on, n_candidate, n_champion, diff, ci_low, ci_high, decision FROM {} "
                "WHERE pipeline = %s AND rollout_id = %s ORDER BY evaluated_on DESC LIMIT 1").format(
                ident(spec.warehouse.monitoring_schema, "canary_evaluations")), (spec.name, r["id"]))
            last = cur.fetchone()
            r["last_check"] = dict(zip([d[0] for d in cur.description], last, strict=True)) if last else None
    return rows
