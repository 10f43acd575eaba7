"""Spec keys of issue 13 (fairness, explain, model_input) and the importance comparison: tiny inputs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from airtrain.model.explain import Importance, compare
from airtrain.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())


def with_(**changes):
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


@pytest.mark.parametrize("fairness, message", [
    pytest.param({"sensitive": ["age"]}, "'age' is not a column of features", id="unknown-column"),
    pytest.param({"sensitive": ["monthly_charges"]}, "is a float; group metrics need", id="float-column"),
    pytest.param({"sensitive": ["region"], "gates": [{"metric": "equalized_odds_difference"}]},
                 "needs threshold", id="gate-without-bound"),
    pytest.param({"sensitive": ["region"], "gates": [{"metric": "equalized_odds_difference", "attribute":
                                                      "contract_type", "threshold": 0.1}]},
                 "is not listed in fairness.sensitive", id="gate-on-unlisted-attribute"),
    pytest.param({"sensitive": ["region"], "gates": [{"metric": "equalized_odds_difference", "threshold": 1.5}]},
                 "less than or equal to 1", id="threshold-above-1"),
])
def test_bad_fairness_sections_are_refused_with_the_fix(fairness, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(with_(fairness=fairness))


def test_a_kept_only_column_is_not_a_model_input_and_at_least_one_input_remains():
    data = copy.deepcopy(GOOD)
    data["features"].append({"name": "age_band", "type": "category", "model_input": False})
    spec = parse_spec(data)
    assert "age_band" in spec.feature_names and "age_band" not in spec.model_feature_names
    for f in data["features"]:
        f["model_input"] = False
    with pytest.raises(SpecError, match="at least one feature must be a model input"):
        parse_spec(data)


def test_the_churn_spec_enables_the_new_keys():
    spec = parse_spec(GOOD)
    assert spec.fairness is not None and spec.fairness.sensitive and spec.fairness.gates
    assert spec.explain.importance and spec.explain.importance_rows >= 50


def test_compare_names_the_features_that_moved_beyond_their_noise():
    new = [Importance("a", 0.30, 0.01), Importance("b", 0.05, 0.01), Importance("c", 0.02, 0.05)]
    old = [Importance("a", 0.10, 0.01), Importance("b", 0.20, 0.01), Importance("c", 0.00, 0.05),
           Importance("d", 0.04, 0.01)]
    cmp = compare(new, old)
    assert cmp["gained"] == ["a"] and sorted(cmp["lost"]) == ["b", "d"]  # c moved less than its noise
    assert [r["feature"] for r in cmp["features"]][:2] == ["a", "b"]  # biggest movers first
    assert compare(new, None)["features"][0] == {"feature": "a", "challenger": 0.30, "challenger_std": 0.01, "rank": 1}
