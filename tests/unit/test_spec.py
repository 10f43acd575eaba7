"""Pipeline specs: the shipped ones load; bad ones are refused with file, key and fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from airtrain.spec import SpecError, check_identifier, load_spec, load_specs, parse_spec, spec_reference

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())


def test_shipped_specs_load():
    specs = load_specs()
    assert [s.name for s in specs] == ["churn"]
    s = specs[0]
    assert s.feature_names[:2] == ["tenure_months", "monthly_charges"]
    assert s.table("predictions_latest") == ("predictions", "churn_latest")
    assert s.retrain_dag_id == "churn_retrain"


def test_minimal_spec_gets_documented_defaults():
    minimal = {
        "name": "m", "source": {"kind": "postgres", "schema": "src", "table": "t", "date_column": "d"},
        "entity_key": "id", "features": [{"name": "x", "type": "float"}], "target": {"name": "y"},
        "training": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "evaluation": {"metrics": ["roc_auc"], "primary_metric": "roc_auc"},
        "promotion": {"gates": [{"metric": "roc_auc", "threshold": 0.6}]},
    }
    s = parse_spec(minimal)
    assert s.warehouse.conn_id == "warehouse" and s.date_column == "as_of_date"
    assert s.schedule.retries == 2 and s.validation.max_quarantine_fraction == 0.2
    assert s.training.window_days == 60 and s.training.holdout_days == 7


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    cur = data
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    last = parts[-1]
    if value is _DELETE:
        del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize("path, value, key, hint", [
    pytest.param("trainng", {}, "trainng", "unknown key", id="unknown-top-level-key"),
    pytest.param("features.2.nulable", True, "features[2].nulable", "unknown key", id="unknown-nested-key"),
    pytest.param("training.window_days", "sixty", "training.window_days", "integer", id="wrong-type"),
    pytest.param("name", "churn; DROP TABLE x", "name", "not a safe SQL identifier", id="injection-in-name"),
    pytest.param("features.0.name", "a\"b", "features[0].name", "not a safe SQL identifier", id="quote-in-feature"),
    pytest.param("entity_key", "CustomerId", "entity_key", "lower-case", id="uppercase-identifier"),
    pytest.param("date_column", "select", "date_column", "reserved SQL word", id="reserved-word"),
    pytest.param("features.0.name", "x" * 64, "features[0].name", "at most 63 bytes", id="identifier-over-63-bytes"),
    pytest.param("name", "a" * 31, "name", "at most 30", id="pipeline-name-too-long"),
    pytest.param("warehouse.raw_schema", "raw-data", "warehouse.raw_schema", "safe SQL identifier",
                 id="schema-with-dash"),
    pytest.param("promotion.gates.0.threshold", 1.5, "promotion.gates[0]", "can never be met",
                 id="auc-threshold-above-1"),
    pytest.param("features.0.min", 500, "features[0]", "greater than max", id="min-above-max"),
    pytest.param("training.holdout_days", 60, "training", "must be smaller than window_days",
                 id="holdout-not-smaller-than-window"),
    pytest.param("monitoring.trigger.drift_share", 0, "monitoring.trigger.drift_share", "greater than 0",
                 id="drift-share-zero"),
    pytest.param("monitoring.trigger.drift_share", 1.5, "monitoring.trigger.drift_share", "less than or equal",
                 id="drift-share-above-1"),
    pytest.param("validation.max_quarantine_fraction", 2, "validation.max_quarantine_fraction", "less than or equal",
                 id="quarantine-fraction-2"),
    pytest.param("target.label_delay_days", -1, "target.label_delay_days", "greater than or equal",
                 id="negative-label-delay"),
    pytest.param("schedule.retries", 1, "schedule.retries", "greater than or equal to 2", id="too-few-retries"),
    pytest.param("evaluation.primary_metric", "accuracy", "evaluation", "must be one of metrics",
                 id="primary-not-in-metrics"),
    pytest.param("evaluation.metrics", ["roc_auc", "log_loss", "rmse"], "(top level)", "do not fit", id="regression-metric-on-classifier"),
    pytest.param("evaluation.slices", ["plan"], "(top level)", "not a feature", id="slice-not-a-feature"),
    pytest.param("monitoring.trigger.critical_features", ["nope"], "(top level)", "not a feature",
                 id="critical-feature-unknown"),
    pytest.param("promotion.gates.1.metric", "brier", "(top level)", "does not compute", id="gate-metric-not-computed"),
    pytest.param("labels", _DELETE, "(top level)", "needs a 'labels' section", id="label-delay-without-labels"),
    pytest.param("training.estimator", "os.system", "training", "scikit-learn class path", id="estimator-os-system"),
    pytest.param("training.estimator", "builtins.eval", "training", "scikit-learn class path", id="estimator-eval"),
    pytest.param("schedule.retrain", "every day", "schedule", "cron", id="bad-cron"),
    pytest.param("schedule.timezone", "Mars/Olympus", "schedule", "unknown timezone", id="bad-timezone"),
    pytest.param("source.pattern", "batch.csv", "source", "{date}", id="pattern-without-date"),
    pytest.param("target.positive", True, "target.positive", 'quote it so it stays text, e.g. "Yes"',
                 id="unquoted-yes-in-target-positive"),
    pytest.param("features.5.allowed", ["one_year", False], "features[5].allowed", 'quote it', id="unquoted-no-in-allowed"),
    pytest.param("description", True, "description", "YAML read an unquoted", id="unquoted-yes-in-a-text-key"),
    pytest.param("target.negative", ["0"], "target", "negative needs positive", id="negative-without-positive"),
    pytest.param("features.0.source", "Monthly\nCharges", "features[0].source", "not a usable source column",
                 id="source-with-a-line-break"),
    pytest.param("features.1.source", "tenure_months", "(top level)", "used by both", id="one-source-two-columns"),
    pytest.param("validation.row_count", {"min": 10, "max": 100}, "(top level)",
                 "monitoring.min_rows (300) is more than a monitoring window can hold", id="min-rows-over-max-batch"),
    pytest.param("date_format", "%d-%m", "(top level)", "does not read a date back", id="date-format-without-year"),
    pytest.param("date_format", "today", "(top level)", "does not read a date back", id="date-format-not-a-format"),
    pytest.param("source", {"kind": "postgres", "schema": "src", "table": "t", "date_column": "d"},
                 "(top level)", "remove date_format", id="date-format-on-a-postgres-source"),
])
def test_bad_specs_are_refused_with_file_key_and_fix(tmp_path, path, value, key, hint):
    data = _set(GOOD, path, value)
    if path == "source":
        data["date_format"] = "%d-%m-%Y"
    f = tmp_path / "churn.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(f)
    msg = str(err.value)
    assert str(f) in msg
    assert f"key '{key}" in msg, msg
    assert hint in msg, msg


def test_duplicate_feature_is_refused():
    data = copy.deepcopy(GOOD)
    data["features"].append(dict(data["features"][0]))
    with pytest.raises(SpecError, match="listed twice"):
        parse_spec(data)


@pytest.mark.parametrize("content, hint", [
    pytest.param("- a\n- b\n", "mapping", id="not-a-mapping"),
    pytest.param("name: [unclosed\n", "not valid YAML", id="invalid-yaml"),
])
def test_unreadable_files(tmp_path, content, hint):
    f = tmp_path / "churn.yaml"
    f.write_text(content)
    with pytest.raises(SpecError, match=hint):
        load_spec(f)


def test_missing_file_and_name_mismatch(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")
    f = tmp_path / "other.yaml"
    f.write_text(yaml.safe_dump(GOOD))
    with pytest.raises(SpecError, match="must match the file name"):
        load_spec(f)


def test_several_problems_are_all_listed(tmp_path):
    data = _set(_set(GOOD, "trainng", 1), "features.0.min", 500)
    with pytest.raises(SpecError) as err:
        parse_spec(data, tmp_path / "churn.yaml")
    assert len(err.value.problems) >= 2


@pytest.mark.parametrize("name, ok", [
    ("customer_id", True), ("_x1", True), ("a" * 63, True), ("a" * 64, False), ("1abc", False),
    ("Abc", False), ("a-b", False), ("a b", False), ("a;b", False), ("", False), ("table", False), ("é", False),
])
def test_check_identifier(name, ok):
    if ok:
        assert check_identifier(name) == name
    else:
        with pytest.raises(ValueError):
            check_identifier(name)


def test_derived_names_fit_postgres_for_the_longest_pipeline_name():
    s = parse_spec(_set(GOOD, "name", "p" * 30))
    kinds = ["raw", "features", "quarantine", "labels", "predictions", "predictions_latest", "shadow_predictions"]
    for kind in kinds:
        schema, table = s.table(kind)
        assert len(table.encode()) <= 63 and check_identifier(table)
    import datetime as dt

    from airtrain.serving.target import target_for

    t = target_for(s, dt.date(2026, 1, 1), 99999, "shadow")
    assert len(f"{t.partition}_pkey") <= 63 and len(f"{t.stage}_pkey") <= 63
    for shard in (0, 255):  # a shard's table and the published leaf (scoring.partitions: at most 256)
        assert len(f"{t.shard_table(shard)}_pkey") <= 63 and len(f"{t.leaf(shard)}_pkey") <= 63
    assert len({t.shard_table(s) for s in range(256)} | {t.leaf(s) for s in range(256)}) == 512


def test_duplicate_names_in_a_directory(tmp_path):
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(GOOD))
    with pytest.raises(SpecError):
        load_specs(tmp_path)


def test_docs_list_every_key():
    doc = (ROOT / "docs/SPEC.md").read_text()
    missing = [k for k, *_ in spec_reference() if f"| `{k}` |" not in doc]
    assert missing == [], f"docs/SPEC.md lacks {missing}; regenerate with `python -m airtrain.spec`"


def test_training_min_rows_is_checked_against_the_batch_size():
    data = _set(_set(GOOD, "validation.row_count", {"min": 1, "max": 30}), "monitoring.min_rows", 10)
    with pytest.raises(SpecError, match=r"training.min_rows \(2000\) is more than the training window can hold: "
                                        r"validation.row_count.max \(30\) x 53 training days"):
        parse_spec(data)


def test_positive_and_negative_must_not_overlap_and_need_a_binary_target():
    with pytest.raises(SpecError, match="both positive and negative"):
        parse_spec(_set(_set(GOOD, "target.positive", "Yes"), "target.negative", ["No", "Yes"]))
    data = _set(_set(GOOD, "target.positive", "1"), "target.task", "regression")
    data["evaluation"] = {"metrics": ["rmse"], "primary_metric": "rmse"}
    data["promotion"] = {"gates": [{"metric": "rmse", "max_regression_rel": 0.1}]}
    with pytest.raises(SpecError, match="remove them for a regression target"):
        parse_spec(data)


@pytest.mark.parametrize("positive, negative, value, label", [
    pytest.param("Yes", "No", "Yes", 1, id="mapped-positive"),
    pytest.param("Yes", "No", " No ", 0, id="mapped-negative-trimmed"),
    pytest.param("Yes", "No", "yes", None, id="mapping-is-case-sensitive"),
    pytest.param("Yes", "No", "Maybe", None, id="unmapped-value-is-invalid"),
    pytest.param("Yes", None, "whatever", 0, id="without-negative-every-other-value-is-0"),
    pytest.param(["churned", "Yes"], None, "churned", 1, id="several-positive-values"),
    pytest.param(None, None, "TRUE", 1, id="bool-spelling"),
    pytest.param(None, None, "0", 0, id="zero"),
    pytest.param(None, None, "Yes", 1, id="yes-without-mapping"),
    pytest.param(None, None, "2", None, id="not-a-label"),
    pytest.param("Yes", "No", "   ", None, id="blank-is-no-label"),
])
def test_target_values_map_to_labels(positive, negative, value, label):
    data = _set(GOOD, "target.positive", positive)
    if negative is not None:
        data = _set(data, "target.negative", negative)
    assert parse_spec(data).target.label_of(value) == label


def test_source_names_map_headers_to_warehouse_columns():
    data = _set(_set(_set(GOOD, "features.1.source", "MonthlyCharges"), "entity_key_source", "customerID"),
                "target.source", "Churn")
    s = parse_spec(data)
    cols = s.source_columns()
    assert cols["monthly_charges"] == "MonthlyCharges" and cols["customer_id"] == "customerID"
    assert cols["churned"] == "Churn" and cols["tenure_months"] == "tenure_months"
    assert not s.schedule.start_paused  # the demo spec opts out: `make run` lands its data first
    assert parse_spec(_set(GOOD, "schedule.start_paused", _DELETE)).schedule.start_paused  # the default
    assert s.labels_from_batch is False and parse_spec(_set(_set(GOOD, "labels", _DELETE),
                                                            "target.label_delay_days", 0)).labels_from_batch


@pytest.mark.parametrize(("rows_per_shard", "max_shards", "rows", "want"), [
    pytest.param(None, 16, 10_000_000, 2, id="unset: partitions"),
    pytest.param(100_000, 16, 0, 1, id="empty date: one shard"),
    pytest.param(100_000, 16, 100_000, 1, id="exactly one"),
    pytest.param(100_000, 16, 100_001, 2, id="rounds up"),
    pytest.param(100_000, 16, 10_000_000, 16, id="capped"),
])
def test_scoring_shards_follow_the_rows(rows_per_shard, max_shards, rows, want):
    from airtrain.spec import ScoringSpec

    s = ScoringSpec(partitions=2, rows_per_shard=rows_per_shard, max_shards=max_shards)
    assert s.shards_for(rows) == want


def _regression(drop: float | None) -> dict:
    data = copy.deepcopy(GOOD)
    data["target"] = {k: v for k, v in data["target"].items() if k not in ("positive", "negative")}
    data["target"]["task"] = "regression"
    data["training"] = {**data["training"], "estimator": "sklearn.linear_model.Ridge", "params": {}}
    data["evaluation"] = {"metrics": ["rmse", "mae"], "primary_metric": "rmse"}
    data["promotion"] = {"gates": [{"metric": "rmse", "max_regression_rel": 0.1}]}
    data["fairness"] = None
    data["monitoring"]["trigger"]["performance_drop_abs"] = drop
    return data


def test_performance_drop_abs_is_in_the_metrics_own_units():
    """Issue 20 item 14: an RMSE drop of 40 (rentals) is a sensible trigger; a metric bounded by 0..1
    still refuses more than 1, with the key, the metric and the fix."""
    assert parse_spec(_regression(40)).monitoring.trigger.performance_drop_abs == 40
    data = copy.deepcopy(GOOD)
    data["monitoring"]["trigger"]["performance_drop_abs"] = 40
    with pytest.raises(SpecError, match=r"performance_drop_abs is 40, in the units of the primary metric roc_auc, "
                                        r"which lies between 0 and 1.*use a value in \(0, 1\]"):
        parse_spec(data)
    with pytest.raises(SpecError, match="performance_drop_abs"):
        parse_spec(_regression(-1))


def test_an_unset_drop_trigger_is_off_for_a_metric_in_the_targets_units():
    """0.05 of an RMSE in rentals is noise: unset, the realized-performance trigger of an rmse/mae pipeline
    is off; set, it is what the spec says; a scale-free primary metric keeps the 0.05 default."""
    data = _regression(None)
    del data["monitoring"]["trigger"]["performance_drop_abs"]
    assert parse_spec(data).monitoring.trigger.performance_drop_abs is None
    assert parse_spec(_regression(12.5)).monitoring.trigger.performance_drop_abs == 12.5
    clf = copy.deepcopy(GOOD)
    clf["monitoring"]["trigger"].pop("performance_drop_abs", None)
    assert parse_spec(clf).monitoring.trigger.performance_drop_abs == 0.05


def test_a_drop_is_towards_worse_for_either_direction():
    from airtrain.monitoring.performance import performance_drop

    assert performance_drop("rmse", 80.0, 40.0) == 40.0  # the error rose: a drop of 40 in RMSE units
    assert performance_drop("rmse", 30.0, 40.0) == -10.0  # better
    assert performance_drop("roc_auc", 0.72, 0.80) == pytest.approx(0.08)
