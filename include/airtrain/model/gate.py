"""TFX-style promotion gate: value thresholds and change thresholds against the champion. Pure.

Direction comes from the metric (``spec.LOWER_IS_BETTER``). A gate's ``threshold`` is a minimum for
higher-is-better metrics and a maximum for lower-is-better ones; ``max_regression_abs`` /
``max_regression_rel`` bound how much *worse* than the champion the challenger may be. By default
(``primary`` given) the primary metric must not be worse than the champion's on the same rows at all:
a tolerance applies only where a gate on the primary metric sets ``max_regression_abs`` /
``max_regression_rel``. With no champion, only value thresholds apply: the first model passes on value
alone. Every message states the real difference and its direction ("better by", "worse by").
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from airtrain.spec import LOWER_IS_BETTER, GateSpec


@dataclass(frozen=True)
class GateCheck:
    metric: str
    kind: str  # threshold | max_regression_abs | max_regression_rel
    challenger: float | None
    champion: float | None
    bound: float
    passed: bool
    message: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "checks": [asdict(c) for c in self.checks]}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _change(worse_by: float, rel: bool = False) -> str:
    """The real difference in words: "better by 0.0200" / "worse by 2.56%" / "the same"."""
    if abs(worse_by) <= 1e-12:
        return "the same"
    size = f"{abs(worse_by):.2%}" if rel else f"{abs(worse_by):.4f}"
    return f"{'worse' if worse_by > 0 else 'better'} by {size}"


def _no_regression(metric: str, new: float, old: float) -> GateCheck:
    """The default comparison on the primary metric (no tolerance set): not worse than the champion."""
    lower = metric in LOWER_IS_BETTER
    worse_by = (new - old) if lower else (old - new)
    ok = worse_by <= 1e-12
    return GateCheck(metric, "no_regression", new, old, 0.0, ok,
                     f"{metric} {new:.4f} vs champion {old:.4f} on the same rows: {_change(worse_by)} "
                     f"(primary metric: must not be worse; no tolerance set) {'ok' if ok else 'FAILED'}")


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, gates: list[GateSpec],
           challenger_compared: dict[str, Any] | None = None, primary: str | None = None) -> GateDecision:
    """Apply ``gates``. Value thresholds use ``challenger`` (its metrics on its whole holdout); the
    comparison with the champion uses ``challenger_compared`` when given - the challenger's metrics
    on exactly the rows the champion was scored on (see :func:`fair_window`).

    ``primary`` (the spec's primary metric): unless a gate on it sets ``max_regression_abs`` or
    ``max_regression_rel``, the challenger must not be worse than the champion on it (a
    ``no_regression`` check); without ``primary`` only the listed gates apply."""
    checks: list[GateCheck] = []
    for g in gates:
        lower = g.metric in LOWER_IS_BETTER
        new = _num(challenger.get(g.metric))
        old = _num(champion.get(g.metric)) if champion else None
        if new is None:
            checks.append(GateCheck(g.metric, "value", None, old, float("nan"), False,
                                    f"{g.metric}: the challenger has no value for it"))
            continue
        if g.threshold is not None:
            ok = new <= g.threshold if lower else new >= g.threshold
            op = "<=" if lower else ">="
            checks.append(GateCheck(g.metric, "threshold", new, old, g.threshold, ok,
                                    f"{g.metric} {new:.4f} {op} {g.threshold} {'ok' if ok else 'FAILED'}"))
        if old is None:
            continue
        if challenger_compared is not None:
            new = _num(challenger_compared.get(g.metric))
            if new is None:
                checks.append(GateCheck(g.metric, "comparison", None, old, float("nan"), False,
                                        f"{g.metric}: no value for the challenger on the compared days"))
                continue
        worse_by = (new - old) if lower else (old - new)  # > 0 means the challenger is worse
        if g.max_regression_abs is not None:
            ok = worse_by <= g.max_regression_abs + 1e-12
            checks.append(GateCheck(g.metric, "max_regression_abs", new, old, g.max_regression_abs, ok,
                                    f"{g.metric} {new:.4f} vs champion {old:.4f}: {_change(worse_by)} "
                                    f"(allowed: worse by up to {g.max_regression_abs}) {'ok' if ok else 'FAILED'}"))
        if g.max_regression_rel is not None:
            rel = worse_by / abs(old) if old else (0.0 if worse_by <= 0 else math.inf)
            ok = rel <= g.max_regression_rel + 1e-12
            checks.append(GateCheck(g.metric, "max_regression_rel", new, old, g.max_regression_rel, ok,
                                    f"{g.metric} {new:.4f} vs champion {old:.4f}: {_change(rel, rel=True)} "
                                    f"(allowed: worse by up to {g.max_regression_rel:.2%}) {'ok' if ok else 'FAILED'}"))
    if primary is not None and champion is not None and not any(
            g.metric == primary and (g.max_regression_abs is not None or g.max_regression_rel is not None)
            for g in gates):
        new = _num((challenger if challenger_compared is None else challenger_compared).get(primary))
        old = _num(champion.get(primary))
        if new is None:
            checks.append(GateCheck(primary, "no_regression", None, old, 0.0, False,
                                    f"{primary}: no value for the challenger on the compared days"))
        elif old is not None:
            checks.append(_no_regression(primary, new, old))
    return GateDecision(not _failed(checks), checks, _reason(checks, first_model=champion is None))


def _failed(checks: list[GateCheck]) -> list[GateCheck]:
    return [c for c in checks if not c.passed]


def _reason(checks: list[GateCheck], *, first_model: bool) -> str:
    """The decision in one line: what failed, or what passed (never an empty list)."""
    failed = _failed(checks)
    if failed:
        return "gate failed: " + "; ".join(c.message for c in failed)
    if first_model:
        if not checks:
            return ("gate passed (first model: no champion to compare with, and no gate sets a value threshold, "
                    "so nothing was checked)")
        return "gate passed (first model: no champion to compare with; value thresholds only): " + "; ".join(
            c.message for c in checks)
    if not checks:
        return "gate passed (no check applied)"
    return "gate passed: " + "; ".join(c.message for c in checks)


def fairness_checks(challenger: dict[str, dict[str, Any]] | None, champion: dict[str, dict[str, Any]] | None,
                    gates: list[Any], sensitive: list[str],
                    challenger_compared: dict[str, dict[str, Any]] | None = None) -> list[GateCheck]:
    """Checks for the fairness gates (``spec.fairness.gates``): disparities are lower-is-better.

    ``threshold`` bounds the challenger's disparity on its whole holdout; ``max_regression_abs``
    bounds how much larger it may be than the champion's on the same rows (``challenger_compared``).
    A disparity that could not be computed (fewer than two eligible groups) fails the check: "no
    value" is never read as "fair". The metric of a check is ``<disparity>:<attribute>``."""
    checks: list[GateCheck] = []
    for g in gates:
        for attr in ([g.attribute] if g.attribute else sensitive):
            name = f"{g.metric}:{attr}"
            new = _num(((challenger or {}).get(attr) or {}).get(g.metric))
            old = _num(((champion or {}).get(attr) or {}).get(g.metric)) if champion else None
            if new is None:
                checks.append(GateCheck(name, "value", None, old, float("nan"), False,
                                        f"{name}: no value for the challenger (fewer than two groups with enough "
                                        "rows and both labels)"))
                continue
            if g.threshold is not None:
                ok = new <= g.threshold + 1e-12
                checks.append(GateCheck(name, "threshold", new, old, g.threshold, ok,
                                        f"{name} {new:.4f} <= {g.threshold} {'ok' if ok else 'FAILED'}"))
            if g.max_regression_abs is None or old is None:
                continue
            cmp = _num(((challenger_compared or {}).get(attr) or {}).get(g.metric)) if challenger_compared else new
            if cmp is None:
                checks.append(GateCheck(name, "comparison", None, old, float("nan"), False,
                                        f"{name}: no value for the challenger on the compared days"))
                continue
            worse_by = cmp - old
            ok = worse_by <= g.max_regression_abs + 1e-12
            checks.append(GateCheck(name, "max_regression_abs", cmp, old, g.max_regression_abs, ok,
                                    f"{name} {cmp:.4f} vs champion {old:.4f}: {_change(worse_by)} "
                                    f"(allowed: worse by up to {g.max_regression_abs}) {'ok' if ok else 'FAILED'}"))
    return checks


def with_checks(decision: GateDecision, extra: list[GateCheck], *, first_model: bool) -> GateDecision:
    """``decision`` with ``extra`` checks added (all must pass), its reason rewritten the same way."""
    if not extra:
        return decision
    checks = [*decision.checks, *extra]
    return GateDecision(not _failed(checks), checks, _reason(checks, first_model=first_model))


def refused(reason: str) -> GateDecision:
    """A decision that refuses without checking metrics (e.g. no fair comparison is possible)."""
    return GateDecision(False, [], reason)


def fair_window(holdout: tuple[dt.date, dt.date], champion_trained: tuple[dt.date, dt.date] | None,
                champion: int) -> tuple[tuple[dt.date, dt.date] | None, str | None]:
    """The days of the challenger's ``holdout`` on which the champion can be scored fairly: those it
    was NOT trained on. Returns ``(window, note)``:

    * no overlap → ``(holdout, None)``;
    * partial overlap → the newest non-overlapping stretch, with a note saying which days were left out;
    * the champion was trained on every holdout day → ``(None, reason)``: no fair comparison exists.

    An unknown training window (a version registered without lineage) cannot be checked: the
    whole holdout is used and the note says so.
    """
    h0, h1 = holdout
    if champion_trained is None:
        return holdout, f"champion v{champion} has no recorded training window; compared on the whole holdout"
    t0, t1 = champion_trained
    if t1 < h0 or t0 > h1:
        return holdout, None
    one = dt.timedelta(days=1)
    if t1 < h1:
        window = (max(h0, t1 + one), h1)
    elif t0 > h0:
        window = (h0, min(h1, t0 - one))
    else:
        return None, (f"no fair comparison: champion v{champion} was trained on {t0}..{t1}, which covers the "
                      f"whole holdout {h0}..{h1} of this challenger, so its scores there are in-sample; not "
                      "promoted (force_promote with a reason to override)")
    return window, (f"champion v{champion} was trained on {t0}..{t1}, which overlaps the holdout {h0}..{h1}; "
                    f"champion and challenger are compared on {window[0]}..{window[1]} only (days it never saw)")


def trained_window(lineage: dict[str, Any]) -> tuple[dt.date, dt.date] | None:
    """The days a model version was trained on, from its lineage (None when not recorded)."""
    w = lineage.get("window") or {}
    start, end = w.get("train_start"), w.get("train_end")
    if not (start and end) and lineage.get("train_dates"):
        start, end = lineage["train_dates"][0], lineage["train_dates"][-1]
    try:
        return dt.date.fromisoformat(str(start)[:10]), dt.date.fromisoformat(str(end)[:10])
    except (TypeError, ValueError):
        return None
