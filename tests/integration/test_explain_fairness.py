"""Explanations and fairness per model version (issue 13, parts A and B), through the pipeline's own
steps on a real PostgreSQL warehouse with real scikit-learn and fairlearn.

The data comes from the simulator's ``group_disparity`` scenario: each batch carries the sensitive
attribute ``age_band`` (kept and validated, but not a model input: ``model_input: false``) and
customers under 30 churn more - a real disparity. The champion does not use ``age_band``; a
challenger that uses it raises the selection-rate gap between age bands, and the fairness gate
refuses it (a person can still force it, with a reason)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from airtrain.registry import champions, versions
from airtrain.steps import release, retrain
from airtrain.steps.schema import apply_schema

from tests.integration.dagtest import fetch, land_days, module_project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2026, 5, 1)
DAYS = 17
AGE_BAND = {"name": "age_band", "type": "category", "allowed": ["under_30", "30_to_64", "65_plus"],
            "model_input": False}


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def overrides(model_input: bool = False) -> dict:
    features = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())["features"]
    return {
        "features": [*features, {**AGE_BAND, "model_input": model_input}],
        "training": {"min_rows": 300, "window_days": 10, "holdout_days": 3},
        "scoring": {"shadow": False},
        # a value bound and any change vs the champion allowed, so the fairness gate is what decides here
        "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.6, "max_regression_abs": 1.0}]},
        "explain": {"importance_rows": 400, "importance_repeats": 2},
        "fairness": {"sensitive": ["age_band", "senior_citizen"], "min_group_rows": 30,
                     "gates": [{"metric": "demographic_parity_difference", "attribute": "age_band",
                                "max_regression_abs": 0.05}]},
    }


@pytest.fixture(scope="module")
def proj(tmp_path_factory, pg_server):
    p, mp = module_project(tmp_path_factory, pg_server, "explainfair", overrides())
    # the champion (as of day 15) trains on days 5..11; the challengers (as of day 16) hold out 13..15
    land_days(p, day(5), DAYS - 5, rows=200, scenario="group_disparity")
    spec, wh = p.spec(), p.warehouse
    apply_schema(wh, spec)
    dates = [day(i) for i in range(5, DAYS)]
    retrain.ingest(wh, spec, dates, "boot", p.root)
    retrain.validate(wh, spec, dates, "boot", today=dates[-1], reports_root=p.root / "reports")
    out = retrain.train(wh, spec, day(15), "champ")
    ev = retrain.evaluate(wh, spec, out["version"], "champ", day(15))
    res = release.promote(wh, spec, ev, run_id="champ", actor="test")
    assert res["promoted"], res  # the first model: no champion to compare disparities with
    yield p
    mp.undo()


def test_importance_is_stored_per_version_for_both_roles_on_the_same_rows_and_compared(proj):
    spec, wh = proj.spec(), proj.warehouse
    champion = champions.champion_version(wh, spec)
    # the first model: its own importances, one per model input (age_band is kept but not used)
    first = fetch(wh, "SELECT feature FROM registry.feature_importance WHERE run_id = 'champ' ORDER BY feature")
    assert sorted(f for (f,) in first) == sorted(spec.model_feature_names) and ("age_band",) not in first
    new = retrain.train(wh, spec, day(16), "chal")
    ev = retrain.evaluate(wh, spec, new["version"], "chal", day(16))
    rows = fetch(wh, "SELECT role, version, count(*), min(n_rows), max(n_rows), min(holdout_start), "
                     "max(holdout_end), min(scoring), min(n_repeats) FROM registry.feature_importance "
                     "WHERE run_id = 'chal' GROUP BY role, version ORDER BY role")
    n = len(spec.model_feature_names)
    assert rows == [("challenger", new["version"], n, 400, 400, day(13), day(15), "roc_auc", 2),
                    ("champion", champion, n, 400, 400, day(13), day(15), "roc_auc", 2)]
    # contract_type drives churn in the simulator: it must matter more than region (pure noise)
    imp = dict(fetch(wh, "SELECT feature, importance_mean FROM registry.feature_importance WHERE run_id = 'chal' "
                         "AND role = 'challenger'"))
    assert imp["contract_type"] > 0.02 and imp["contract_type"] > imp["region"] + 0.02, imp
    # the comparison: stored with the version, one row per feature, deltas = challenger - champion
    cmp = fetch(wh, "SELECT metrics->'importance' FROM registry.model_versions WHERE version = %s",
                (new["version"],))[0][0]
    assert cmp == ev["importance"] and cmp["champion_version"] == champion and cmp["rows"] == 400
    champ_imp = dict(fetch(wh, "SELECT feature, importance_mean FROM registry.feature_importance WHERE "
                               "run_id = 'chal' AND role = 'champion'"))
    for r in cmp["features"]:
        assert r["delta"] == pytest.approx(imp[r["feature"]] - champ_imp[r["feature"]])
    assert set(cmp["gained"]) | set(cmp["lost"]) <= set(imp)
    # a re-run of the evaluation replaces its rows (same seed: same numbers), never duplicates them
    retrain.evaluate(wh, spec, new["version"], "chal", day(16))
    again = dict(fetch(wh, "SELECT feature, importance_mean FROM registry.feature_importance WHERE run_id = 'chal' "
                           "AND role = 'challenger'"))
    assert again == pytest.approx(imp)


def test_fairness_groups_and_disparities_are_stored_and_a_challenger_that_widens_the_gap_is_refused(proj):
    spec, wh = proj.spec(), proj.warehouse
    champion = champions.champion_version(wh, spec)
    # the challenger uses age_band directly (same data, same params: still a new version)
    biased_spec = proj.spec().model_copy(update={"features": [
        f.model_copy(update={"model_input": True}) if f.name == "age_band" else f for f in spec.features]})
    new = retrain.train(wh, biased_spec, day(16), "biased")
    assert new["version"] != champion
    ev = retrain.evaluate(wh, biased_spec, new["version"], "biased", day(16))
    groups = fetch(wh, "SELECT role, group_value, n_rows FROM registry.fairness WHERE run_id = 'biased' AND "
                       "attribute = 'age_band' AND metric = 'selection_rate' ORDER BY role, group_value")
    assert [(r, g) for r, g, _ in groups] == [(role, g) for role in ("challenger", "champion")
                                              for g in ("30_to_64", "65_plus", "under_30")]
    assert sum(n for r, _, n in groups if r == "champion") == 600  # the compared days 13..15, 200 rows each
    # the real disparity: under-30s churn more, so more of them are flagged by either model
    rate = {(r, g): v for r, g, v in fetch(
        wh, "SELECT role, group_value, value FROM registry.fairness WHERE run_id = 'biased' AND attribute = "
            "'age_band' AND metric = 'selection_rate'")}
    assert rate[("champion", "under_30")] > rate[("champion", "30_to_64")]
    dp = dict(fetch(wh, "SELECT role, value FROM registry.fairness WHERE run_id = 'biased' AND attribute = "
                        "'age_band' AND group_value = '' AND metric = 'demographic_parity_difference'"))
    # fairlearn's between-groups difference = max - min of the stored per-group selection rates
    for role in ("challenger", "champion"):
        assert dp[role] == pytest.approx(max(v for (r, _), v in rate.items() if r == role)
                                         - min(v for (r, _), v in rate.items() if r == role))
    assert ev["fairness"]["champion"]["age_band"]["demographic_parity_difference"] == pytest.approx(
        dp["champion"], abs=1e-6)
    assert dp["challenger"] > dp["champion"] + 0.05, dp  # using age_band widens the gap
    # the gate refuses it, with the reason, and the champion stays
    out = release.promote(wh, biased_spec, ev, run_id="biased", actor="test")
    assert out["promoted"] is False and "demographic_parity_difference:age_band" in out["gate_reason"]
    gate = fetch(wh, "SELECT metrics->'gate' FROM registry.model_versions WHERE version = %s", (new["version"],))[0][0]
    failed = [c for c in gate["checks"] if not c["passed"]]
    assert [(c["metric"], c["kind"]) for c in failed] == [("demographic_parity_difference:age_band",
                                                           "max_regression_abs")], gate
    assert champions.champion_version(wh, spec) == champion
    # same semantics as the other gates: a person can force it, and the log says who and why
    forced = release.promote(wh, biased_spec, ev, run_id="biased", actor="user:ann", force=True,
                           reason="age_band is allowed for this campaign")
    assert forced["promoted"] and forced["action"] == "force_promote"
    log = champions.promotion_log(wh, spec)[-1]
    assert log["action"] == "force_promote" and "age_band is allowed" in log["reason"]
    assert "demographic_parity_difference:age_band" in log["reason"]


def test_a_disparity_that_cannot_be_computed_fails_the_gate_instead_of_passing():
    """Fail closed: a group too small for a disparity gives no value, and no value never means fair."""
    from airtrain.model.gate import fairness_checks
    from airtrain.spec import FairnessGateSpec

    gates = [FairnessGateSpec(metric="equalized_odds_difference", threshold=0.1)]
    checks = fairness_checks({"age_band": {"equalized_odds_difference": None}}, None, gates, ["age_band"])
    assert [c.passed for c in checks] == [False] and "no value" in checks[0].message
    ok = fairness_checks({"age_band": {"equalized_odds_difference": 0.05}}, None, gates, ["age_band"])
    assert [c.passed for c in ok] == [True]


def test_the_model_card_says_what_the_model_is_how_it_did_and_why_it_is_live(proj):
    """Part D: the card of the forced version (after the test above), as JSON in the registry and as
    HTML; a headless Chromium screenshot of the HTML when Chromium is installed."""
    import shutil
    import subprocess

    from airtrain.registry import cards
    from airtrain.spec.hashing import spec_hash

    spec, wh = proj.spec(), proj.warehouse
    version = champions.champion_version(wh, spec)
    card = fetch(wh, "SELECT card FROM registry.model_cards WHERE pipeline = 'churn' AND version = %s",
                 (version,))[0][0]
    assert card == cards.read(wh, spec, version) and card["is_champion"] is True
    assert card["data"]["train"] == [str(day(6)), str(day(12))] and card["data"]["train_rows"] == 1400
    # the features as this version was trained: the forced challenger used age_band, the old champion did not
    assert {"name": "age_band", "type": "category", "model_input": True, "description": ""} in card["features"]
    old_card = cards.read(wh, spec, 1)
    assert {"name": "age_band", "type": "category", "model_input": False, "description": ""} in old_card["features"]
    assert card["estimator"] == spec.training.estimator and card["params"]["max_iter"] == 150
    assert card["gate"]["passed"] is False and "demographic_parity_difference:age_band" in card["gate"]["reason"]
    assert [p["action"] for p in card["promotions"]] == ["force_promote"]
    assert "age_band is allowed" in card["promotions"][0]["reason"]
    roles = {r["role"] for r in card["metrics"]["rows"]}
    assert roles == {"challenger", "champion"} and card["metrics"]["comparison"]["champion_version"] == 1
    assert {r["feature"] for r in card["importance"]["rows"]} >= {"age_band", "contract_type"}
    assert any(r["metric"] == "demographic_parity_difference" for r in card["fairness"]["rows"])
    lin = card["lineage"]
    assert lin["artifact_sha256"] == versions.get_version(wh, spec, version).artifact_sha256
    assert lin["spec_sha256"] and lin["spec_sha256"] != spec_hash(spec)  # trained with age_band as an input
    assert lin["library_versions"]["sklearn"] and lin["code_version"]
    # the replaced champion's card now says it is not live any more
    assert old_card["is_champion"] is False
    page = cards.render_html(card)
    for heading in ("Model", "Data", "Features", "Metrics", "Feature importance (permutation)", "Fairness",
                    "Gate decision", "Promotions and approvals", "Lineage"):
        assert f"<h2>{heading}</h2>" in page
    assert "age_band is allowed for this campaign" in page and "<script" not in page
    out = proj.root / "ui"
    out.mkdir(exist_ok=True)
    (out / "model_card.html").write_text(page)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:
        shot = out / "model_card.png"
        subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        f"--user-data-dir={out / 'profile'}", "--window-size=1200,2400", f"--screenshot={shot}",
                        (out / "model_card.html").as_uri()], capture_output=True, timeout=120, check=False)
        assert shot.exists() and shot.stat().st_size > 20_000, "Chromium wrote no screenshot of the card"
