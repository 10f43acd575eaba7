"""Canary rollout in batch scoring (spec key ``rollout.strategy: canary``). Pure core: no Airflow import.

Lifecycle (one row per canary in ``registry.rollouts``):

* **start** - a challenger that passed the gate (and the approval, if required) becomes the
  *candidate* instead of the champion (:func:`release`): a ``running`` row written under the same
  advisory lock as a champion change, as a compare-and-swap on the champion the challenger was
  evaluated against. At most one canary runs per pipeline (a unique partial index): another
  challenger that passes while one runs is logged as ``not_started`` (with the reason) and is not
  started - the running canary is decided first.
* **scoring** - :func:`arm_of` / :func:`arm_condition`: md5 of ``<salt>:<entity key>``, first 32 bits,
  below ``fraction * 2**32`` → ``candidate``; else ``champion``. The salt is stored with the rollout,
  so the assignment is stable across days and can be recomputed from the log. Both arms are written to
  the predictions table (one partition per arm and date, column ``arm``) and published in ONE swap.
* **decision** - :func:`evaluate` (the monitor, daily): per arm, the realized primary metric on the
  labeled rows of the days both arms scored since the start; a seeded bootstrap (each arm resampled
  within itself) gives a confidence interval of the *improvement* (candidate - champion, sign flipped
  for lower-is-better metrics). Abort when its upper bound is < 0 (worse), graduate when its lower
  bound is > -margin, else wait; ``max_days`` without a decision aborts. Each evaluation is a row of
  ``monitoring.canary_evaluations``.
* **graduate** - the candidate becomes the champion through :func:`airtrain.registry.promote` (the
  same locked, logged compare-and-swap); the rollout row is closed in the same transaction
  (:func:`close_on_champion_change`, also called for any other champion change - a forced promotion
  or a rollback aborts a running canary). **abort** - the rollout row is closed, the champion keeps
  every entity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from psycopg2 import sql

from airtrain.db import Warehouse, ident, xact_lock
from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.spec import LOWER_IS_BETTER, PipelineSpec, RolloutSpec

log = logging.getLogger(__name__)

ROLLOUTS_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, pipeline text NOT NULL, "
    "candidate_version integer NOT NULL, champion_version integer, fraction double precision NOT NULL "
    "CHECK (fraction > 0 AND fraction < 1), salt text NOT NULL, started_on date, "
    "started_at timestamptz NOT NULL DEFAULT now(), status text NOT NULL CHECK (status IN "
    "('running','graduated','aborted','not_started')), decided_on date, decided_at timestamptz, reason text, "
    "decided_by text, run_id text NOT NULL, decided_run_id text, promotion_id bigint, alerted_at timestamptz)")
ROLLOUTS_RUNNING_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_running ON {} (pipeline) WHERE status = 'running'"
EVALUATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, rollout_id bigint NOT NULL, evaluated_on date NOT NULL, "
    "candidate_version integer NOT NULL, champion_version integer, metric text NOT NULL, first_day date, "
    "last_day date, days integer, n_candidate integer NOT NULL, n_champion integer NOT NULL, "
    "metric_candidate double precision, metric_champion double precision, diff double precision, "
    "ci_low double precision, ci_high double precision, confidence double precision, "
    "decision text NOT NULL CHECK (decision IN ('wait','graduate','abort')), reason text NOT NULL, run_id text, "
    "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, rollout_id, evaluated_on))")

ARMS = ("champion", "candidate")
_SPACE = 2 ** 32


class CanaryError(PermanentError, RuntimeError):
    """A canary operation was refused (no canary running, a stale decision, ...)."""


@dataclass(frozen=True)
class Rollout:
    id: int
    pipeline: str
    candidate_version: int
    champion_version: int | None
    fraction: float
    salt: str
    started_on: dt.date | None
    status: str
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_on"] = self.started_on.isoformat() if self.started_on else None
        return d


def _t(spec: PipelineSpec, table: str) -> sql.Identifier:
    return ident(spec.warehouse.registry_schema, table)


def enabled(spec: PipelineSpec) -> bool:
    return spec.rollout.strategy == "canary"


# ---------------------------------------------------------------------------------------------
# arm assignment
# ---------------------------------------------------------------------------------------------


def salt_for(spec: PipelineSpec, candidate_version: int) -> str:
    """The rollout's salt: per pipeline and candidate, so each canary draws its own entities."""
    return f"{spec.name}/v{int(candidate_version)}"


def _cut(fraction: float) -> int:
    return int(fraction * _SPACE)


def arm_of(key: Any, salt: str, fraction: float) -> str:
    """The arm of one entity (what :func:`arm_condition` computes in SQL)."""
    h = int(hashlib.md5(f"{salt}:{key}".encode(), usedforsecurity=False).hexdigest()[:8], 16)
    return "candidate" if h < _cut(fraction) else "champion"


def arm_condition(key_sql: str, salt: str, fraction: float, arm: str) -> str:
    """SQL text selecting the entities of ``arm`` (``key_sql`` is a quoted column name). A literal on
    purpose (the scoring query streams only without bind parameters); the salt is quoted here."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}")
    lit = "'" + str(salt).replace("'", "''") + ":'"
    bucket = f"('x' || substr(md5({lit} || {key_sql}::text), 1, 8))::bit(32)::bigint"
    return f"{bucket} {'<' if arm == 'candidate' else '>='} {_cut(fraction)}"


# ---------------------------------------------------------------------------------------------
# registry.rollouts
# ---------------------------------------------------------------------------------------------

_ROLLOUT_COLS = "id, pipeline, candidate_version, champion_version, fraction, salt, started_on, status, run_id"


def _row(r: tuple[Any, ...]) -> Rollout:
    return Rollout(int(r[0]), r[1], int(r[2]), None if r[3] is None else int(r[3]), float(r[4]), r[5], r[6], r[7],
                   r[8])


def running(wh: Warehouse, spec: PipelineSpec, cur: Any = None) -> Rollout | None:
    """The pipeline's running canary, or None."""
    q = sql.SQL("SELECT {} FROM {} WHERE pipeline = %s AND status = 'running'").format(
        sql.SQL(_ROLLOUT_COLS), _t(spec, "rollouts"))
    if cur is not None:
        cur.execute(q, (spec.name,))
        r = cur.fetchone()
        return _row(r) if r else None
    with wh.connect() as conn, conn.cursor() as c:
        c.execute(q, (spec.name,))
        r = c.fetchone()
    return _row(r) if r else None


def list_rollouts(wh: Warehouse, spec: PipelineSpec, limit: int = 20, *, with_last_check: bool = False
                  ) -> list[dict[str, Any]]:
    """The newest rollouts, running ones first (UI page, readers); ``with_last_check``: each with its
    newest row of ``monitoring.canary_evaluations`` (``last_check``, or None)."""
    import psycopg2.errors

    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL(
                "SELECT id, candidate_version, champion_version, fraction, salt, started_on, status, decided_on, "
                "reason, decided_by, run_id, decided_run_id FROM {} WHERE pipeline = %s "
                "ORDER BY status = 'running' DESC, id DESC LIMIT %s").format(_t(spec, "rollouts")), (spec.name, limit))
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            if with_last_check:
                for r in rows:
                    cur.execute(sql.SQL(
                        "SELECT evaluated_on, n_candidate, n_champion, diff, ci_low, ci_high, decision FROM {} "
                        "WHERE pipeline = %s AND rollout_id = %s ORDER BY evaluated_on DESC LIMIT 1").format(
                        ident(spec.warehouse.monitoring_schema, "canary_evaluations")), (spec.name, r["id"]))
                    last = cur.fetchone()
                    r["last_check"] = dict(zip([d[0] for d in cur.description], last, strict=True)) if last else None
            return rows
    except psycopg2.errors.UndefinedTable:
        return []


def release(wh: Warehouse, spec: PipelineSpec, version: int, *, action: str, actor: str, reason: str, run_id: str,
            metrics: dict[str, Any] | None = None, expected_champion: Any = None, newer_only: bool = False,
            as_of: dt.date | None = None, triggered_by: str | None = None) -> dict[str, Any]:
    """Release a promotable version: with ``rollout.strategy: canary`` (and a champion to compare
    with, and a gate-passed ``promote``) start a canary; otherwise make it the champion at once
    (:func:`airtrain.registry.promote`: a forced promotion or the first model are never canaries)."""
    from airtrain import registry

    if expected_champion is None:
        expected_champion = registry.ANY_CHAMPION
    if not (enabled(spec) and action == "promote") or registry.champion_version(wh, spec) is None:
        return registry.promote(wh, spec, version, action=action, actor=actor, reason=reason, run_id=run_id,
                                metrics=metrics, expected_champion=expected_champion, newer_only=newer_only,
                                triggered_by=triggered_by)
    return start(wh, spec, version, actor=actor, reason=reason, run_id=run_id, expected_champion=expected_champion,
                 newer_only=newer_only, as_of=as_of)


def start(wh: Warehouse, spec: PipelineSpec, version: int, *, actor: str, reason: str, run_id: str,
          expected_champion: Any, newer_only: bool, as_of: dt.date | None) -> dict[str, Any]:
    """Make ``version`` the canary candidate: one transaction under the promotion lock, a
    compare-and-swap on the champion (like :func:`airtrain.registry.promote`). Returns
    ``{"changed": False, "canary": "started" | "running" | "not_started", ...}``, or ``"refused"``."""
    from airtrain import registry

    r = spec.rollout
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "promote", spec.name)
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s FOR UPDATE").format(_t(spec, "champions")),
                    (spec.name,))
        row = cur.fetchone()
        current = int(row[0]) if row else None
        base = {"changed": False, "from_version": current, "to_version": version, "promotion_id": None}
        if current == version:
            return base
        if expected_champion is not registry.ANY_CHAMPION and expected_champion != current:
            return {**base, "refused": (
                f"champion changed: the canary of v{version} was decided against {registry._v(expected_champion)}, "
                f"but the champion is {registry._v(current)} now; re-run to decide against it")}
        if newer_only and current is not None:
            why = registry.out_of_order(cur, spec, version, current)
            if why:
                return {**base, "refused": why}
        if newer_only and (found := registry.automatic_refusal(cur, spec, version)):  # rejected, or held
            return {**base, "refused": found[1], "refused_kind": found[0]}
        now_running = running(wh, spec, cur)
        if now_running is not None and now_running.candidate_version == version:
            return {**base, "canary": "running", "rollout": now_running.as_dict()}  # a retry: started before
        if now_running is not None:
            note = (f"not started: the canary of v{now_running.candidate_version} (rollout {now_running.id}, since "
                    f"{now_running.started_on}) is still running; decide it first (it graduates or aborts), then "
                    f"re-run to evaluate v{version} against the champion")
            cur.execute(sql.SQL(
                "INSERT INTO {t} (pipeline, candidate_version, champion_version, fraction, salt, started_on, status, "
                "reason, decided_by, run_id) SELECT %s, %s, %s, %s, %s, %s, 'not_started', %s, %s, %s WHERE NOT EXISTS "
                "(SELECT 1 FROM {t} WHERE pipeline = %s AND candidate_version = %s AND status = 'not_started' "
                "AND started_at >= (SELECT started_at FROM {t} WHERE id = %s))").format(t=_t(spec, "rollouts")),
                (spec.name, version, current, r.canary_fraction, salt_for(spec, version), as_of, note, actor, run_id,
                 spec.name, version, now_running.id))  # logged once per version while this canary runs
            return {**base, "canary": "not_started", "message": note}
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, candidate_version, champion_version, fraction, salt, started_on, status, reason, "
            "decided_by, run_id) VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s, %s) RETURNING {}").format(
            _t(spec, "rollouts"), sql.SQL(_ROLLOUT_COLS)),
            (spec.name, version, current, r.canary_fraction, salt_for(spec, version), as_of,
             f"started: {reason}", actor, run_id))
        started = _row(cur.fetchone())
        failpoint("promote.before_commit")
    failpoint("promote.after_commit")  # a retry of the promote task finds this canary running: "running"
    log.info("%s: v%s is the canary candidate for %.0f%% of the entities (rollout %s, champion v%s)", spec.name,
             version, 100 * r.canary_fraction, started.id, current)
    return {**base, "canary": "started", "rollout": started.as_dict()}


def close_on_champion_change(cur: Any, spec: PipelineSpec, *, new_champion: int, action: str, actor: str,
                             reason: str, run_id: str, promotion_id: int, decided_on: dt.date | None = None) -> None:
    """Inside :func:`airtrain.registry.promote`'s transaction: a running canary is graduated when its
    candidate became the champion, aborted when any other version did (a forced promotion, a rollback)."""
    cur.execute("SELECT to_regclass(%s)", (f'"{spec.warehouse.registry_schema}"."rollouts"',))
    if cur.fetchone()[0] is None:
        return
    cur.execute(sql.SQL(
        "UPDATE {} SET status = CASE WHEN candidate_version = %s THEN 'graduated' ELSE 'aborted' END, "
        "reason = CASE WHEN candidate_version = %s THEN %s ELSE %s END, decided_by = %s, decided_run_id = %s, "
        "decided_at = now(), decided_on = COALESCE(%s, current_date), promotion_id = %s "
        "WHERE pipeline = %s AND status = 'running'").format(_t(spec, "rollouts")),
        (new_champion, new_champion, reason, f"aborted: v{new_champion} was made the champion by {action} ({reason})",
         actor, run_id, decided_on, promotion_id, spec.name))


def graduate(wh: Warehouse, spec: PipelineSpec, rollout: Rollout, *, reason: str, actor: str, run_id: str,
             decided_on: dt.date | None, metrics: dict[str, Any] | None = None,
             effective_on: dt.date | None = None) -> dict[str, Any]:
    """The candidate becomes the champion for every entity: the registry's locked, logged
    compare-and-swap (the champion must still be the one the canary ran against); the rollout row is
    closed in the same transaction. ``effective_on``: the first date it scores alone (default
    ``decided_on``)."""
    from airtrain import registry

    res = registry.promote(wh, spec, rollout.candidate_version, action="promote", actor=actor,
                           reason=f"canary graduated: {reason}", run_id=run_id,
                           metrics={"canary": metrics or {}, "rollout_id": rollout.id},
                           expected_champion=rollout.champion_version, canary_decided_on=decided_on,
                           effective_on=effective_on or decided_on)
    if res.get("refused"):
        abort(wh, spec, rollout, reason=f"cannot graduate: {res['refused']}", actor=actor, run_id=run_id,
              decided_on=decided_on)
        raise CanaryError(f"canary of v{rollout.candidate_version} not graduated: {res['refused']} (aborted)")
    return {"decision": "graduate", "rollout_id": rollout.id, **res}


def abort(wh: Warehouse, spec: PipelineSpec, rollout: Rollout, *, reason: str, actor: str, run_id: str,
          decided_on: dt.date | None) -> bool:
    """Retire the candidate (the champion keeps every entity). Returns whether this call closed it."""
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "promote", spec.name)
        cur.execute(sql.SQL(
            "UPDATE {} SET status = 'aborted', reason = %s, decided_by = %s, decided_run_id = %s, decided_at = now(), "
            "decided_on = COALESCE(%s, current_date) WHERE id = %s AND status = 'running'").format(
            _t(spec, "rollouts")), (f"aborted: {reason}", actor, run_id, decided_on, rollout.id))
        return cur.rowcount == 1


def unalerted_aborts(wh: Warehouse, spec: PipelineSpec) -> list[dict[str, Any]]:
    """Aborted canaries whose alert was not sent yet (an alert is recorded only after it went out)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, candidate_version, champion_version, reason, decided_by, decided_on FROM {} "
                            "WHERE pipeline = %s AND status = 'aborted' AND alerted_at IS NULL ORDER BY id").format(
            _t(spec, "rollouts")), (spec.name,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def mark_alerted(wh: Warehouse, spec: PipelineSpec, rollout_id: int) -> None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET alerted_at = now() WHERE id = %s").format(_t(spec, "rollouts")),
                    (rollout_id,))


def decide_manually(wh: Warehouse, spec: PipelineSpec, action: str, *, reason: str, actor: str, run_id: str,
                    on: dt.date | None = None) -> dict[str, Any]:
    """A person graduates or aborts the running canary (run parameter ``canary_action`` with a reason).
    A retry after the decision committed finds the rollout closed by this run and succeeds."""
    if action not in ("graduate", "abort"):
        raise CanaryError(f"canary_action must be 'graduate' or 'abort', not {action!r}")
    rollout = running(wh, spec)
    if rollout is None:
        done = _decided_by_run(wh, spec, run_id)
        if done is not None:
            return {"decision": action, "rollout_id": done, "already_decided": True}
        raise CanaryError(f"{spec.name} has no running canary to {action} (see {spec.warehouse.registry_schema}"
                          ".rollouts); nothing was changed")
    why = f"{action} by {actor}: {reason}"
    if action == "graduate":
        return graduate(wh, spec, rollout, reason=why, actor=actor, run_id=run_id, decided_on=on,
                        metrics={"manual": True})
    abort(wh, spec, rollout, reason=why, actor=actor, run_id=run_id, decided_on=on)
    return {"decision": "abort", "rollout_id": rollout.id, "candidate_version": rollout.candidate_version}


def _decided_by_run(wh: Warehouse, spec: PipelineSpec, run_id: str) -> int | None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id FROM {} WHERE pipeline = %s AND decided_run_id = %s ORDER BY id DESC LIMIT 1"
                            ).format(_t(spec, "rollouts")), (spec.name, run_id))
        r = cur.fetchone()
    return int(r[0]) if r else None


# ---------------------------------------------------------------------------------------------
# the decision: bootstrap confidence interval of the improvement
# ---------------------------------------------------------------------------------------------


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
    from airtrain.evaluation import compute_metrics

    return np.array([compute_metrics(ys[i], ss[i], [metric], threshold).get(metric, np.nan) for i in range(len(idx))])


def decide(candidate: tuple[Any, Any], champion: tuple[Any, Any], metric: str, threshold: float,
           rollout: RolloutSpec) -> Decision:
    """The canary decision from the labeled rows of each arm (``(labels, scores)`` arrays). Pure.

    Too few labeled rows in an arm (< ``min_labeled``) → wait. Else a percentile bootstrap, each arm
    resampled with replacement within itself (stratified, ``bootstrap_samples`` times, seeded with
    ``seed``), of the improvement; abort when the upper bound < 0, graduate when the lower bound >
    -margin, else wait."""
    import numpy as np

    from airtrain.evaluation import compute_metrics

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
    from airtrain.steps import read_frame

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
    from airtrain.ingest import load_labels

    load_labels(wh, spec, as_of)  # the labels known on as_of (idempotent; the drift check beside does it too)
    df = arm_rows(wh, spec, rollout, as_of)
    arms = {a: df[df["arm"] == a] for a in ARMS}
    d = decide((arms["candidate"]["label"].to_numpy(), arms["candidate"]["score"].to_numpy()),
               (arms["champion"]["label"].to_numpy(), arms["champion"]["score"].to_numpy()),
               spec.evaluation.primary_metric, spec.evaluation.threshold, spec.rollout)
    days = (as_of - rollout.started_on).days + 1 if rollout.started_on else None
    if d.decision == "graduate":
        from airtrain import registry

        hold = registry.promotion_hold(wh, spec)
        if hold is not None:  # a graduation is an automatic promotion: it waits while promotions are held
            d = Decision(**{**asdict(d), "decision": "wait",
                            "reason": f"would graduate ({d.reason}), but {registry.held_reason(spec, hold)}"})
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
        abort(wh, spec, rollout, reason=d.reason, actor=actor, run_id=run_id, decided_on=as_of)
    out["applied"] = True
    return out


# ---------------------------------------------------------------------------------------------
# scoring both arms (the DAG's begin_scoring → score (mapped) → publish_predictions)
# ---------------------------------------------------------------------------------------------


def begin(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, run_id: str) -> dict[str, Any]:
    """The date's scoring target: the champion's for that date (as :func:`airtrain.scoring.begin`), or -
    while a canary runs and the date is not older than its start - the champion arm's, carrying the
    candidate arm's target under ``"canary"``. A date before the canary started (a backfill, a re-run)
    is scored by its champion alone."""
    from dataclasses import replace

    from airtrain import registry, scoring

    rollout = running(wh, spec) if enabled(spec) else None
    if rollout is not None and rollout.started_on is not None and as_of < rollout.started_on:
        rollout = None
    if rollout is None:
        return scoring.begin(wh, spec, as_of, "champion", run_id=run_id).as_dict()
    champion = registry.champion_as_of(wh, spec, as_of)
    if champion != rollout.champion_version:
        raise CanaryError(f"rollout {rollout.id} runs against v{rollout.champion_version} but the champion is "
                          f"v{champion}; abort it (canary_action: abort) - nothing was scored")
    arm = {"salt": rollout.salt, "fraction": rollout.fraction}
    main = replace(scoring.begin(wh, spec, as_of, champion, run_id=run_id), arm="champion", **arm)
    cand = replace(scoring.begin(wh, spec, as_of, rollout.candidate_version, run_id=run_id), arm="candidate",
                   shards=main.shards, rows=main.rows, **arm)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN arm SET DEFAULT 'candidate'").format(
            ident(cand.schema, cand.stage)))
    return {**main.as_dict(), "canary": {"rollout_id": rollout.id, "candidate": cand.as_dict()}}


def score_shard(wh: Warehouse, spec: PipelineSpec, target: dict[str, Any], *, run_id: str, shard: int,
                shards: int) -> dict[str, Any]:
    """Score one shard of both arms (each into its own stage table)."""
    from airtrain import scoring

    out: dict[str, Any] = {"shard": shard, "rows": 0, "arms": {}, "seconds": 0.0}
    for arm, t in (("champion", target), ("candidate", target["canary"]["candidate"])):
        res = scoring.score_shard(wh, spec, scoring.ScoringTarget.from_dict(t), run_id=run_id, shard=shard,
                                  shards=shards)
        out["arms"][arm] = int(res["rows"])
        out["rows"] += int(res["rows"])
        out["seconds"] = round(out["seconds"] + float(res["seconds"]), 3)
    return out


def publish(wh: Warehouse, spec: PipelineSpec, target: dict[str, Any], shard_results: list[dict[str, Any]] | None,
            *, run_id: str) -> dict[str, Any]:
    """Both arms' partitions of the date in ONE swap (other versions of the date are dropped)."""
    from airtrain import scoring

    def expected(arm: str) -> int | None:
        return None if shard_results is None else sum(int(r["arms"][arm]) for r in shard_results)

    main = scoring.ScoringTarget.from_dict(target)
    cand = scoring.ScoringTarget.from_dict(target["canary"]["candidate"])
    res = scoring.publish(wh, spec, main, expected("champion"), run_id=run_id,
                          companions=[(cand, expected("candidate"))])
    res["rollout_id"] = target["canary"]["rollout_id"]
    return res
