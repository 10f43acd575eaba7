"""The canary decision on small frames (pure: no database) and the arm assignment."""

from __future__ import annotations

import numpy as np
import pytest
from airtrain.monitoring.canary import decide
from airtrain.serving.arms import arm_of
from airtrain.spec import RolloutSpec

RULE = RolloutSpec(strategy="canary", min_labeled=200, bootstrap_samples=400, seed=7)


def _arm(n: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores whose ranking quality grows with ``signal`` (0: random scores)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, n))))
    return y, s


@pytest.mark.parametrize(("cand", "champ", "n", "want"), [
    pytest.param(1.5, 0.3, 600, "graduate", id="clearly-better-graduates"),
    pytest.param(0.3, 1.5, 600, "abort", id="clearly-worse-aborts"),
    pytest.param(1.5, 0.3, 150, "wait", id="too-few-labels-waits"),
    pytest.param(0.8, 0.8, 600, "wait", id="same-model-waits"),
])
def test_decision(cand: float, champ: float, n: int, want: str) -> None:
    d = decide(_arm(n, cand, 1), _arm(n * 4, champ, 2), "roc_auc", 0.5, RULE)
    assert d.decision == want, d.reason
    if want != "wait" or n >= RULE.min_labeled:
        assert d.ci_low is not None and d.ci_low <= d.diff <= d.ci_high


def test_decision_is_reproducible_and_lower_is_better_flips_the_sign() -> None:
    a, b = _arm(500, 1.5, 3), _arm(500, 0.2, 4)
    assert decide(a, b, "roc_auc", 0.5, RULE) == decide(a, b, "roc_auc", 0.5, RULE)
    d = decide(a, b, "brier", 0.5, RULE)  # lower is better: the better candidate has a positive improvement
    assert d.metric_candidate < d.metric_champion and d.diff > 0 and d.decision == "graduate"


def test_margin_makes_it_non_inferiority() -> None:
    a, b = _arm(800, 0.8, 5), _arm(800, 0.8, 6)
    strict = decide(a, b, "roc_auc", 0.5, RULE)
    loose = decide(a, b, "roc_auc", 0.5, RolloutSpec(**{**RULE.model_dump(), "margin": 0.2}))
    assert (strict.decision, loose.decision) == ("wait", "graduate")


def test_bootstrap_auc_matches_sklearn_on_the_point_estimate() -> None:
    from airtrain.monitoring.canary import _samples
    from sklearn.metrics import roc_auc_score

    y, s = _arm(300, 1.0, 8)
    idx = np.stack([np.arange(300), np.random.default_rng(0).integers(0, 300, 300)])
    got = _samples(y.astype(float), s, "roc_auc", 0.5, idx)
    assert got[0] == pytest.approx(roc_auc_score(y, s))
    assert got[1] == pytest.approx(roc_auc_score(y[idx[1]], s[idx[1]]))


def test_arm_assignment_is_stable_and_near_the_fraction() -> None:
    arms = [arm_of(k, "churn/v2", 0.2) for k in range(20000)]
    assert arms == [arm_of(k, "churn/v2", 0.2) for k in range(20000)]
    assert abs(arms.count("candidate") / len(arms) - 0.2) < 0.01
    other = [arm_of(k, "churn/v3", 0.2) for k in range(20000)]  # another canary draws other entities
    assert sum(a == b == "candidate" for a, b in zip(arms, other, strict=True)) < 0.3 * arms.count("candidate")
