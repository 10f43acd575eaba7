"""Pipeline specs: one YAML file per model, loaded into a typed, validated object.

A spec is the only thing a team writes to add a model. Everything downstream (warehouse tables,
DAGs, validation rules, estimator, gates, drift thresholds) is derived from it. Loading is strict:
unknown keys, wrong types, unsafe SQL identifiers and impossible thresholds are refused with a
message that names the file, the key and the fix (:class:`SpecError`).

One module per section (``source``, ``validation``, ``training``, ``release``, ``monitoring``,
``scoring``, ``schedule``), the whole spec in ``pipeline``, loading in ``loading``, and the "Every
key" table of docs/SPEC.md generated from the fields' descriptions in ``reference``
(``python -m airtrain.spec``). This package never imports Airflow, pandas or scikit-learn, so DAG
files can load specs cheaply at parse time (reading a small local YAML file is the only I/O).
"""

from airtrain.spec.hashing import model_shaping, model_spec_sha256, spec_hash, spec_text
from airtrain.spec.loading import (
    DEFAULT_SPEC_DIR,
    SpecError,
    SpecScan,
    SpecsError,
    excluded_pipelines,
    load_spec,
    load_specs,
    parse_spec,
    scan_specs,
    spec_dir,
)
from airtrain.spec.monitoring import ColumnDrift, MonitoringSpec, TriggerRule
from airtrain.spec.names import (
    MAX_IDENT_BYTES,
    RESERVED_WORDS,
    Ident,
    PipelineName,
    SourceName,
    SpecModel,
    check_identifier,
)
from airtrain.spec.pipeline import PipelineSpec
from airtrain.spec.reference import spec_reference
from airtrain.spec.release import PromotionSpec, RolloutSpec
from airtrain.spec.schedule import AlertsSpec, ScheduleSpec
from airtrain.spec.scoring import PredictionExplainSpec, ScoringSpec
from airtrain.spec.source import (
    BOOL_SPELLINGS,
    FeatureSpec,
    FeatureType,
    FilesSource,
    LabelsSpec,
    PostgresSource,
    TargetSpec,
    WarehouseSpec,
)
from airtrain.spec.training import (
    BOUNDED_0_1,
    LOWER_IS_BETTER,
    TARGET_UNITS,
    ClassificationMetric,
    EvaluationSpec,
    ExplainSpec,
    FairnessGateSpec,
    FairnessMetric,
    FairnessMonitorSpec,
    FairnessSpec,
    GateSpec,
    Metric,
    RegressionMetric,
    SearchSpec,
    TrainingSpec,
)
from airtrain.spec.validation import FreshnessRule, RowCountRule, ValidationSpec

__all__ = [
    "BOOL_SPELLINGS", "BOUNDED_0_1", "DEFAULT_SPEC_DIR", "LOWER_IS_BETTER", "MAX_IDENT_BYTES", "RESERVED_WORDS", "TARGET_UNITS",
    "AlertsSpec", "ClassificationMetric", "ColumnDrift", "EvaluationSpec", "ExplainSpec", "FairnessGateSpec",
    "FairnessMetric", "FairnessMonitorSpec", "FairnessSpec", "FeatureSpec", "FeatureType", "FilesSource",
    "FreshnessRule", "GateSpec", "Ident", "LabelsSpec", "Metric", "MonitoringSpec", "PipelineName", "PipelineSpec",
    "PostgresSource", "PredictionExplainSpec", "PromotionSpec", "RegressionMetric", "RolloutSpec", "RowCountRule",
    "ScheduleSpec", "ScoringSpec", "SearchSpec", "SourceName", "SpecError", "SpecModel", "SpecScan", "SpecsError",
    "TargetSpec", "TrainingSpec", "TriggerRule", "ValidationSpec", "WarehouseSpec", "check_identifier",
    "excluded_pipelines", "load_spec", "load_specs", "model_shaping", "model_spec_sha256", "parse_spec",
    "scan_specs", "spec_dir", "spec_hash", "spec_reference", "spec_text",
]
