"""Contract tests on the installed Great Expectations and Evidently: the result shapes the adapters
read, and that the adapters fail closed when a result they asked for is missing or changed.

The "broken" results are real results of the installed library with one item removed or altered
(what an upgrade that changes the shape would hand the adapter) - not mocks of the library. An
upgrade that breaks the shape the adapters rely on fails the first test of each half here, not
production.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airtrain.data.gx import ValidationResultError, _rules, gx_validate, parse_gx_results
from airtrain.data.validation import _type_frame
from airtrain.monitoring.drift import (
    METHOD_THRESHOLDS,
    PREDICTION,
    ColumnRule,
    DriftResultError,
    evidently_drift,
    parse_drift_result,
)
from airtrain.simulate import simulate_day
from airtrain.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
D = dt.date(2026, 3, 1)

# ---------------------------------------------------------------------------------------------
# Evidently
# ---------------------------------------------------------------------------------------------

#: every drift method the spec accepts, each on its own column, so the contract covers each
#: method's threshold direction (p-value: drift below; distance: drift at or above)
METHOD_RULES = [ColumnRule(f"num_{m}", "numerical", m, t) for m, t in METHOD_THRESHOLDS.items()
                if m not in ("chisquare",)] + [
    ColumnRule("cat_chisquare", "categorical", "chisquare", METHOD_THRESHOLDS["chisquare"]),
    ColumnRule("cat_jensenshannon", "categorical", "jensenshannon", 0.1),
    ColumnRule(PREDICTION, "numerical", "psi", 0.1)]


def _frames(shift: float):
    rng = np.random.default_rng(7)
    n = 400

    def frame(mu: float, probs: list[float]) -> pd.DataFrame:
        out = {r.column: rng.normal(mu, 1.0, n) for r in METHOD_RULES if r.kind == "numerical"}
        out.update({r.column: rng.choice(["a", "b", "c"], n, p=probs) for r in METHOD_RULES if r.kind == "categorical"})
        out[PREDICTION] = rng.random(n)
        return pd.DataFrame(out)

    base = [0.4, 0.4, 0.2]
    return frame(0.0, base), frame(shift, [0.1, 0.3, 0.6] if shift else base)


@pytest.fixture(scope="module")
def drift_run():
    """A real Evidently run over every method, with some columns drifted: (scores, Snapshot.dict())."""
    reference, current = _frames(shift=0.8)
    scores, snapshot = evidently_drift(reference, current, METHOD_RULES, drift_share=0.5)
    return scores, snapshot.dict()


def test_evidently_result_shape_is_the_one_the_adapter_reads(drift_run):
    scores, result = drift_run
    assert set(scores) == {r.column for r in METHOD_RULES}
    assert all(isinstance(v, float) and np.isfinite(v) for v in scores.values())
    kinds = [str(m["config"]["type"]).rsplit(":", 1)[-1] for m in result["metrics"]]
    assert kinds.count("ValueDrift") == len(METHOD_RULES) and kinds.count("DriftedColumnsCount") == 1
    count = next(m["value"] for m in result["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount"))
    features = [r for r in METHOD_RULES if r.column != PREDICTION]
    # the cross-check holds on real data: Evidently's count = our per-column threshold reading
    assert int(count["count"]) == sum(1 for r in features if r.drifted(scores[r.column]))
    assert int(count["count"]) == len(features)  # every method flags a real shift
    assert parse_drift_result(result, METHOD_RULES) == scores


def test_evidently_count_agrees_on_stable_data_too():
    """The other direction of every method's threshold: the same rows, nothing drifted, and
    Evidently's count agrees (the adapter's cross-check passes)."""
    reference, _ = _frames(shift=0.0)
    current = reference.sample(frac=1.0, random_state=3).reset_index(drop=True)  # same rows, shuffled
    scores, snapshot = evidently_drift(reference, current, METHOD_RULES, drift_share=0.5)
    result = snapshot.dict()
    count = next(m["value"] for m in result["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount"))
    assert int(count["count"]) == 0
    assert not any(r.drifted(scores[r.column]) for r in METHOD_RULES)


def _without(result: dict, pred) -> dict:
    out = copy.deepcopy(result)
    out["metrics"] = [m for m in out["metrics"] if not pred(m)]
    return out


def test_evidently_missing_value_drift_raises(drift_run):
    _, result = drift_run
    broken = _without(result, lambda m: m["config"].get("column") == "num_psi")
    with pytest.raises(DriftResultError, match="0 ValueDrift results for column 'num_psi'"):
        parse_drift_result(broken, METHOD_RULES)


def test_evidently_renamed_metric_type_raises_instead_of_no_drift(drift_run):
    """The old adapter read ``None`` for every column whose result it did not recognise: no drift."""
    _, result = drift_run
    broken = copy.deepcopy(result)
    for m in broken["metrics"]:
        m["config"]["type"] = m["config"]["type"].replace("ValueDrift", "ValueDriftMetric")
    with pytest.raises(DriftResultError, match="ValueDrift results for column"):
        parse_drift_result(broken, METHOD_RULES)


@pytest.mark.parametrize("change", [
    pytest.param(lambda m: m.update(value=None), id="value-none"),
    pytest.param(lambda m: m.update(value=float("nan")), id="value-nan"),
    pytest.param(lambda m: m.update(value={"score": 0.3}), id="value-dict"),
])
def test_evidently_unreadable_value_raises(drift_run, change):
    _, result = drift_run
    broken = copy.deepcopy(result)
    change(next(m for m in broken["metrics"] if m["config"].get("column") == "num_ks"))
    with pytest.raises(DriftResultError, match="num_ks"):
        parse_drift_result(broken, METHOD_RULES)


def test_evidently_duplicate_or_missing_count_raises(drift_run):
    _, result = drift_run
    dup = copy.deepcopy(result)
    dup["metrics"].append(copy.deepcopy(next(m for m in dup["metrics"] if m["config"].get("column") == "num_ks")))
    with pytest.raises(DriftResultError, match="2 ValueDrift results for column 'num_ks'"):
        parse_drift_result(dup, METHOD_RULES)
    no_count = _without(result, lambda m: m["config"]["type"].endswith(":DriftedColumnsCount"))
    with pytest.raises(DriftResultError, match="0 DriftedColumnsCount results"):
        parse_drift_result(no_count, METHOD_RULES)


def test_evidently_count_disagreeing_with_scores_raises(drift_run):
    """If Evidently's own drifted-columns count and the per-column reading disagree (a threshold's
    direction changed), no decision is made on either."""
    _, result = drift_run
    broken = copy.deepcopy(result)
    count = next(m for m in broken["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount"))
    count["value"]["count"] = float(count["value"]["count"] + 1)
    with pytest.raises(DriftResultError, match="Evidently counts"):
        parse_drift_result(broken, METHOD_RULES)


def test_evidently_no_metrics_list_raises():
    with pytest.raises(DriftResultError, match="no 'metrics' list"):
        parse_drift_result({"widgets": []}, METHOD_RULES)


# ---------------------------------------------------------------------------------------------
# Great Expectations
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gx_case():
    """Typed rows with failures, the spec's rules (one blocking), and GX's raw results."""
    df, _ = simulate_day(D, rows=60)
    raw = df.astype(str).where(df.notna(), None).reset_index(drop=True)
    raw.insert(0, "_row_number", range(1, len(raw) + 1))
    raw.loc[0:2, "tenure_months"] = None  # a non-nullable feature: quarantine rows
    typed, _, _ = _type_frame(raw, SPEC)
    rules = _rules(SPEC, D, set(typed.columns), [])
    rules[-1].severity = "block"  # the row-count rule: make sure a severity other than the default survives
    return typed, rules


def test_gx_result_shape_is_the_one_the_adapter_reads(gx_case):
    typed, rules = gx_case
    results = gx_validate(typed, rules)
    assert len(results) == len(rules)
    assert sorted(er.expectation_config.meta["airtrain_rule"] for er in results) == list(range(len(rules)))
    out = parse_gx_results(results, rules, typed)
    assert sorted((r["expectation"], r["severity"]) for r in out) == sorted(
        (r.expectation.expectation_type, r.severity) for r in rules)
    failed = [r for r in out if not r["success"]]
    assert failed and all(r["_rows"] for r in failed if r["severity"] == "quarantine")
    assert {1, 2, 3} <= {n for r in failed for n in r["_rows"]}  # the row numbers come back (index column)


def test_gx_dropped_meta_raises_instead_of_warn(gx_case):
    """The old adapter turned a result without its meta tag into a ``warn`` rule: a blocking rule
    that failed let the batch through."""
    typed, rules = gx_case
    results = gx_validate(typed, rules)
    results[-1].expectation_config.meta = None
    with pytest.raises(ValidationResultError, match="no valid airtrain_rule tag"):
        parse_gx_results(results, rules, typed)


def test_gx_missing_or_duplicate_result_raises(gx_case):
    typed, rules = gx_case
    results = gx_validate(typed, rules)
    with pytest.raises(ValidationResultError, match="0 results for rule 0"):
        parse_gx_results(results[1:], rules, typed)
    with pytest.raises(ValidationResultError, match="2 results for rule 0"):
        parse_gx_results([results[0], *results], rules, typed)
