"""TFX-style promotion gate: value thresholds and change thresholds against the champion. Pure.

Direction comes from the metric (``spec.LOWER_IS_BETTER``). A gate's ``threshold`` is a minimum for
higher-is-better metrics and a maximum for lower-is-better ones; ``max_regression_abs`` /
``max_regression_rel`` bound how much *worse* than the champion the challenger may be. With no
champion, only value thresholds apply: the first model passes on value alone.
"""

from __future__ import annotations

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


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, gates: list[GateSpec]) -> GateDecision:
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
        worse_by = (new - old) if lower else (old - new)  # > 0 means the challenger is worse
        if g.max_regression_abs is not None:
            ok = worse_by <= g.max_regression_abs + 1e-12
            checks.append(GateCheck(g.metric, "max_regression_abs", new, old, g.max_regression_abs, ok,
                                    f"{g.metric} {new:.4f} vs champion {old:.4f}: worse by {max(worse_by, 0):.4f} "
                                    f"(allowed {g.max_regression_abs}) {'ok' if ok else 'FAILED'}"))
        if g.max_regression_rel is not None:
            rel = worse_by / abs(old) if old else (0.0 if worse_by <= 0 else math.inf)
            ok = rel <= g.max_regression_rel + 1e-12
            checks.append(GateCheck(g.metric, "max_regression_rel", new, old, g.max_regression_rel, ok,
                                    f"{g.metric} {new:.4f} vs champion {old:.4f}: worse by {max(rel, 0):.2%} "
                                    f"(allowed {g.max_regression_rel:.2%}) {'ok' if ok else 'FAILED'}"))
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "gate failed: " + "; ".join(c.message for c in failed)
    elif champion is None:
        reason = "gate passed (first model, value thresholds only): " + "; ".join(c.message for c in checks)
    else:
        reason = "gate passed: " + "; ".join(c.message for c in checks)
    return GateDecision(not failed, checks, reason)
