"""Pipeline specs: one YAML file per model, loaded into a typed, validated object.

A spec is the only thing a team writes to add a model. Everything downstream (warehouse tables,
DAGs, validation rules, estimator, gates, drift thresholds) is derived from it. Loading is strict:
unknown keys, wrong types, unsafe SQL identifiers and impossible thresholds are refused with a
message that names the file, the key and the fix (:class:`SpecError`).

This module never imports Airflow, pandas or scikit-learn, so DAG files can load specs cheaply at
parse time (reading a small local YAML file is the only I/O).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from airtrain.errors import PermanentError

# --------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------

_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
MAX_IDENT_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
# Words Postgres reserves (cannot be used unquoted as table/column names). We always quote
# identifiers with psycopg2.sql.Identifier, but refusing them keeps hand-written SQL safe too.
_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric both case cast check collate column
    constraint create current_catalog current_date current_role current_time current_timestamp
    current_user default deferrable desc distinct do else end except false fetch for foreign from
    grant group having in initially intersect into lateral leading limit localtime localtimestamp
    not null offset on only or order placing primary references returning select session_user
    some symmetric table then to trailing true union unique user using variadic when where window
    with""".split()
)


def check_identifier(value: str) -> str:
    """Return ``value`` if it is a safe lower-case SQL identifier, else raise ``ValueError``."""
    if not isinstance(value, str) or not _IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a safe SQL identifier; use lower-case letters, digits and "
            "underscores, starting with a letter or underscore (e.g. 'monthly_charges')"
        )
    if len(value.encode()) > MAX_IDENT_BYTES:
        raise ValueError(
            f"{value!r} is {len(value.encode())} bytes; PostgreSQL identifiers are at most "
            f"{MAX_IDENT_BYTES} bytes, so shorten it"
        )
    if value in _RESERVED:
        raise ValueError(f"{value!r} is a reserved SQL word; pick another name (e.g. '{value}_')")
    return value


Ident = Annotated[str, AfterValidator(check_identifier)]


def _check_pipeline_name(value: str) -> str:
    check_identifier(value)
    # Derived names ("<name>_retrain", "<name>_predictions_latest", ...) must stay <= 63 bytes.
    if len(value) > 30:
        raise ValueError(
            f"{value!r} is {len(value)} characters; pipeline names are at most 30 so that "
            "derived table and DAG names stay within PostgreSQL's 63-byte limit"
        )
    return value


PipelineName = Annotated[str, AfterValidator(_check_pipeline_name)]


def _check_source_name(value: str) -> str:
    """A column name as it appears in the landing file or source table: any header text."""
    if not value or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} is not a usable source column name: give the header exactly as it appears "
                         "in the file (1-200 characters, no line breaks or control characters)")
    return value


SourceName = Annotated[str, AfterValidator(_check_source_name)]

YAML_BOOL_HINT = ("YAML read an unquoted {word} as the boolean {value}; quote it so it stays text, "
                  "e.g. \"{example}\"")


def _yaml_bool_hint(value: bool) -> str:
    return YAML_BOOL_HINT.format(word="Yes/No/On/Off/True/False", value=str(value).lower(),
                                 example="Yes" if value else "No")


def _text_values(value: Any) -> Any:
    """A list of text values from YAML: a scalar becomes a one-item list, integers become their text,
    and an unquoted Yes/No (a YAML boolean) is refused with the hint to quote it."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool):
            raise ValueError(_yaml_bool_hint(v))
        out.append(str(v) if isinstance(v, int) else v)
    return out


TextValues = Annotated[list[str], BeforeValidator(_text_values)]

Severity = Literal["block", "warn"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class WarehouseSpec(_Model):
    """Where the pipeline's tables live."""

    conn_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")] = "warehouse"
    raw_schema: Ident = "raw"
    features_schema: Ident = "features"
    quarantine_schema: Ident = "quarantine"
    registry_schema: Ident = "registry"
    predictions_schema: Ident = "predictions"
    monitoring_schema: Ident = "monitoring"
    reader_role: Ident = "predictions_reader"


class PostgresSource(_Model):
    kind: Literal["postgres"]
    schema_: Ident = Field(alias="schema")
    table: Ident
    date_column: Ident


class FilesSource(_Model):
    kind: Literal["files"]
    path: str = Field(description="folder of landing files, relative to the project root")
    format: Literal["csv", "parquet"] = "csv"
    pattern: str = Field(
        default="{date}.csv",
        description="file name per partition; '{date}' is replaced by YYYY-MM-DD",
    )
    wait_minutes: Annotated[float, Field(ge=0, le=10080)] = 360.0
    ready_marker: str | None = None

    @model_validator(mode="after")
    def _pattern_has_date(self) -> FilesSource:
        if "{date}" not in self.pattern:
            raise ValueError("source.pattern must contain '{date}', e.g. '{date}.csv'")
        marker = self.ready_marker
        if marker is not None and ("{date}" not in marker or "/" in marker or "\\" in marker or ".." in marker
                                   or marker == self.pattern):
            raise ValueError(f"source.ready_marker {marker!r} must be a file name with '{{date}}' (no '/', '\\' or "
                             "'..'), other than source.pattern, e.g. '{date}.csv.ready' or '_SUCCESS_{date}'")
        if ".." in Path(self.path).parts or Path(self.path).is_absolute() or "\\" in self.path:
            raise ValueError(f"source.path {self.path!r} must be a folder relative to the project root, without "
                             "'..' (e.g. 'data/landing/churn')")
        if "/" in self.pattern or "\\" in self.pattern or ".." in self.pattern:
            raise ValueError(f"source.pattern {self.pattern!r} must be a file name (no '/', '\\' or '..'), "
                             "e.g. '{date}.csv'")
        return self


class LabelsSpec(_Model):
    """Where delayed labels come from: a Postgres table keyed like the features."""

    schema_: Ident = Field(alias="schema")
    table: Ident
    available_column: Ident = Field(
        default="label_available_on",
        description="date on which the label became known; rows later than the run date are ignored",
    )


FeatureType = Literal["int", "float", "category", "bool"]


class FeatureSpec(_Model):
    name: Ident
    source: SourceName | None = None
    type: FeatureType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: TextValues | None = Field(default=None, description="allowed categories")
    on_fail: Severity | Literal["quarantine"] = "quarantine"
    description: str = ""
    model_input: bool = True
    since: dt.date | None = None
    until: dt.date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max}); swap them")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"since ({self.since}) is after until ({self.until}); the column would never arrive")
        if self.type == "category":
            if self.min is not None or self.max is not None:
                raise ValueError("min/max apply to numeric features; remove them for a category")
            if self.allowed is not None and len(self.allowed) == 0:
                raise ValueError("allowed is empty; list the categories or remove the key")
        elif self.allowed is not None:
            raise ValueError("allowed applies to category features only; remove it")
        return self

    def active_on(self, day: dt.date) -> bool:
        """Whether the column is expected in the batch of ``day`` (``since`` <= day <= ``until``).
        Outside that span the column may be absent; its values are NULL and a NULL is accepted."""
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)


class TargetSpec(_Model):
    name: Ident
    source: SourceName | None = None
    task: Literal["binary_classification", "regression"] = "binary_classification"
    label_delay_days: Annotated[int, Field(ge=0, le=365)] = 0
    positive: TextValues | None = None
    negative: TextValues | None = None

    @model_validator(mode="after")
    def _mapping(self) -> TargetSpec:
        if self.task != "binary_classification" and (self.positive or self.negative):
            raise ValueError("positive/negative map the values of a binary_classification target; remove them "
                             "for a regression target")
        if self.negative and not self.positive:
            raise ValueError("negative needs positive (the value(s) that mean 1)")
        if self.positive is not None and not self.positive:
            raise ValueError("positive is empty; list the value(s) that mean 1, e.g. positive: \"Yes\"")
        both = set(self.positive or ()) & set(self.negative or ())
        if both:
            raise ValueError(f"{sorted(both)} is listed as both positive and negative")
        return self

    def label_of(self, value: Any) -> int | None:
        """0/1 for a binary target value as received (text), None when it is not a valid label."""
        if value is None:
            return None
        text = str(value).strip()
        if not text:
            return None
        if self.positive:
            if text in self.positive:
                return 1
            if self.negative is None or text in self.negative:
                return 0
            return None
        return BOOL_SPELLINGS.get(text.lower())

    def label_values(self) -> str:
        """The accepted label values, for messages."""
        if self.positive:
            neg = (f"negative {self.negative}" if self.negative else "any other value is negative")
            return f"positive {self.positive}, {neg}"
        return "1/0, true/false, yes/no (any case)"


#: text that casts to a bool (case-insensitive, after trimming); also the accepted 1/0 target labels
BOOL_SPELLINGS = {"true": 1, "t": 1, "1": 1, "yes": 1, "y": 1, "false": 0, "f": 0, "0": 0, "no": 0, "n": 0}


class RowCountRule(_Model):
    min: Annotated[int, Field(ge=0)] = 1
    max: Annotated[int, Field(ge=1)] | None = None
    on_fail: Severity = "block"

    @model_validator(mode="after")
    def _bounds(self) -> RowCountRule:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class FreshnessRule(_Model):
    max_age_days: Annotated[int, Field(ge=0)] = 1
    on_fail: Severity = "warn"


class ValidationSpec(_Model):
    row_count: RowCountRule = RowCountRule()
    freshness: FreshnessRule = FreshnessRule()
    unique_key_on_fail: Severity | Literal["quarantine"] = "quarantine"
    max_quarantine_fraction: Fraction = Field(
        default=0.2, description="block the batch when more than this share of rows is quarantined"
    )
    suites: list[str] = Field(default_factory=list, description="extra GX suite JSON files")


class SearchSpec(_Model):
    method: Literal["grid", "random"] = "grid"
    param_grid: dict[str, list[Any]]
    cv: Annotated[int, Field(ge=2, le=20)] = 3
    n_iter: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _non_empty(self) -> SearchSpec:
        if not self.param_grid or any(len(v) == 0 for v in self.param_grid.values()):
            raise ValueError("param_grid needs at least one value per parameter")
        return self


_ESTIMATOR_RE = re.compile(r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$")


class TrainingSpec(_Model):
    estimator: str = Field(description="dotted path of a scikit-learn estimator class")
    params: dict[str, Any] = Field(default_factory=dict)
    window_days: Annotated[int, Field(ge=1, le=3650)] = 60
    holdout_days: Annotated[int, Field(ge=1, le=365)] = 7
    min_rows: Annotated[int, Field(ge=10)] = 500
    random_state: int = 42
    search: SearchSpec | None = None
    cadence: Literal["daily", "on_trigger"] = "daily"

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if not _ESTIMATOR_RE.match(self.estimator):
            raise ValueError(
                f"estimator {self.estimator!r} must be a scikit-learn class path such as "
                "'sklearn.ensemble.HistGradientBoostingClassifier'"
            )
        if self.holdout_days >= self.window_days:
            raise ValueError(
                f"holdout_days ({self.holdout_days}) must be smaller than window_days "
                f"({self.window_days}); otherwise nothing is left to train on"
            )
        return self


ClassificationMetric = Literal["roc_auc", "average_precision", "f1", "precision", "recall",
                               "accuracy", "log_loss", "brier"]
RegressionMetric = Literal["rmse", "mae", "r2", "mape"]
Metric = ClassificationMetric | RegressionMetric
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae", "mape"})
#: metrics in the target's own units: no default is meaningful for a drop of them
TARGET_UNITS = frozenset({"rmse", "mae"})
BOUNDED_0_1 = frozenset({"roc_auc", "average_precision", "f1", "precision", "recall", "accuracy",
                         "brier"})


class EvaluationSpec(_Model):
    metrics: list[Metric] = Field(min_length=1)
    primary_metric: Metric
    slices: list[Ident] = Field(default_factory=list)
    threshold: Fraction = Field(default=0.5, description="probability cut-off for a positive label")

    @model_validator(mode="after")
    def _primary_listed(self) -> EvaluationSpec:
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary_metric {self.primary_metric!r} must be one of metrics")
        return self


class GateSpec(_Model):
    """TFX-style gate on one metric (direction taken from the metric)."""

    metric: Metric
    threshold: float | None = Field(
        default=None, description="value bound: minimum (higher-better) or maximum (lower-better)"
    )
    max_regression_abs: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="largest allowed absolute change for the worse vs the champion"
    )
    max_regression_rel: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="largest allowed relative change for the worse vs the champion"
    )

    @model_validator(mode="after")
    def _possible(self) -> GateSpec:
        if self.threshold is None and self.max_regression_abs is None and self.max_regression_rel is None:
            raise ValueError("a gate needs threshold, max_regression_abs or max_regression_rel")
        if self.threshold is not None and self.metric in BOUNDED_0_1 and not 0 <= self.threshold <= 1:
            raise ValueError(
                f"{self.metric} lies between 0 and 1, so threshold {self.threshold} can never "
                "be met; use a value in [0, 1]"
            )
        return self


class PromotionSpec(_Model):
    gates: list[GateSpec] = Field(min_length=1)
    approval: Literal["none", "required"] = "none"
    approval_timeout_hours: Annotated[float, Field(gt=0, le=720)] = 20.0
    approvers: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _approvers_need_approval(self) -> PromotionSpec:
        if self.approvers and self.approval != "required":
            raise ValueError("promotion.approvers is only used with promotion.approval: required (set it, or "
                             "remove approvers)")
        return self


class RolloutSpec(_Model):
    """How a promoted challenger reaches the entities: all at once, or as a canary first."""

    strategy: Literal["immediate", "canary"] = "immediate"
    canary_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    min_labeled: Annotated[int, Field(ge=20)] = 500
    max_days: Annotated[int, Field(ge=1, le=366)] = 14
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95
    margin: Annotated[float, Field(ge=0)] = 0.0
    bootstrap_samples: Annotated[int, Field(ge=100, le=20000)] = 1000
    seed: Annotated[int, Field(ge=0)] = 0


FairnessMetric = Literal["equalized_odds_difference", "demographic_parity_difference"]


class FairnessGateSpec(_Model):
    """A promotion gate on a disparity measure (lower is better: 0 means equal across groups)."""

    metric: FairnessMetric
    attribute: Ident | None = None
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    max_regression_abs: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _possible(self) -> FairnessGateSpec:
        if self.threshold is None and self.max_regression_abs is None:
            raise ValueError("a fairness gate needs threshold (largest allowed disparity) or max_regression_abs "
                             "(largest allowed increase vs the champion)")
        return self


class FairnessMonitorSpec(_Model):
    """A monitor alert on a disparity of the champion's published predictions on realized labels."""

    metric: FairnessMetric
    threshold: Annotated[float, Field(ge=0, le=1)]
    attribute: Ident | None = None


class FairnessSpec(_Model):
    """Group metrics per sensitive attribute at evaluation (fairlearn), and gates on them."""

    sensitive: list[Ident] = Field(min_length=1)
    min_group_rows: Annotated[int, Field(ge=1)] = 30
    gates: list[FairnessGateSpec] = Field(default_factory=list)
    monitor: list[FairnessMonitorSpec] = Field(default_factory=list)


class ExplainSpec(_Model):
    """Global feature importance per model version at evaluation (permutation importance)."""

    importance: bool = True
    importance_rows: Annotated[int, Field(ge=50, le=1_000_000)] = 500
    importance_repeats: Annotated[int, Field(ge=1, le=50)] = 3


class ColumnDrift(_Model):
    method: Literal["psi", "ks", "wasserstein", "jensenshannon", "chisquare", "kl_div"] | None = None
    threshold: Annotated[float, Field(gt=0)] | None = None


class TriggerRule(_Model):
    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    critical_features: list[Ident] = Field(default_factory=list)
    prediction_drift: bool = True
    # in the primary metric's units; the 0.05 default suits scale-free metrics (AUC, F1, log loss, r2, mape) - for
    # one in the target's own units (rmse, mae) an unset key means no performance trigger (PipelineSpec)
    performance_drop_abs: Annotated[float, Field(gt=0)] | None = 0.05
    persistence: Annotated[int, Field(ge=1, le=30)] = 1
    cooldown_days: Annotated[int, Field(ge=0, le=365)] = 7


class MonitoringSpec(_Model):
    window_days: Annotated[int, Field(ge=1, le=365)] = 1
    min_rows: Annotated[int, Field(ge=1)] = 200
    sample_rows: Annotated[int, Field(ge=100)] = 50_000
    default_method: Literal["psi", "ks", "wasserstein", "jensenshannon"] = "psi"
    default_threshold: Annotated[float, Field(gt=0)] = 0.2
    columns: dict[Ident, ColumnDrift] = Field(default_factory=dict)
    trigger: TriggerRule = TriggerRule()


class PredictionExplainSpec(_Model):
    """Per-prediction explanations: the top-k feature contributions of each scored row."""

    top_k: Annotated[int, Field(ge=1, le=50)] = 3
    method: Literal["baseline_substitution"] = "baseline_substitution"


class ScoringSpec(_Model):
    shadow: bool = False
    explain: PredictionExplainSpec | None = None
    partitions: Annotated[int, Field(ge=1, le=256)] = 2
    batch_rows: Annotated[int, Field(ge=1000)] = 100_000
    rows_per_shard: Annotated[int, Field(ge=1000)] | None = None
    max_shards: Annotated[int, Field(ge=1, le=256)] = 16

    def shards_for(self, rows: int) -> int:
        """How many shards score a date of ``rows`` feature rows: ``partitions`` when
        ``rows_per_shard`` is not set, else ceil(rows / rows_per_shard) within 1..``max_shards``."""
        if self.rows_per_shard is None:
            return self.partitions
        return max(1, min(self.max_shards, -(-int(rows) // self.rows_per_shard)))


ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]


class AlertsSpec(_Model):
    slack_conn_id: ConnId | None = None
    smtp_to: list[Annotated[str, Field(pattern=r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")]] = Field(
        default_factory=list)
    webhook_conn_id: ConnId | None = None


class ScheduleSpec(_Model):
    start_paused: bool = True
    retrain: str | None = "0 3 * * *"
    monitor: str = "0 5 * * *"
    start_date: dt.date = dt.date(2026, 1, 1)
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    timezone: str = "UTC"
    retries: Annotated[int, Field(ge=2, le=10)] = 2
    retry_delay_minutes: Annotated[float, Field(gt=0, le=1440)] = 2.0
    max_active_runs: Annotated[int, Field(ge=1, le=64)] = 1
    monitor_on: Literal["predictions", "predictions_or_cron"] = "predictions"

    @model_validator(mode="after")
    def _check(self) -> ScheduleSpec:
        for key in ("retrain", "monitor"):
            value = getattr(self, key)
            if value is None and key == "retrain":
                continue  # history-only: no scheduled retrain runs
            if not (value.startswith("@") or len(value.split()) == 5):
                hint = " or null (no scheduled runs: manual runs only)" if key == "retrain" else ""
                raise ValueError(
                    f"schedule.{key} {value!r} is not a 5-field cron expression or @preset "
                    f"(e.g. '0 3 * * *' or '@daily'){hint}"
                )
        if self.first_date and self.last_date and self.first_date > self.last_date:
            raise ValueError(f"first_date ({self.first_date}) is after last_date ({self.last_date}); swap them")
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.timezone)
        except Exception as exc:  # noqa: BLE001 - re-raised as a readable message
            raise ValueError(f"unknown timezone {self.timezone!r} (use an IANA name like 'UTC')") from exc
        return self

    def dag_start(self) -> dt.date:
        """The DAGs' start date: ``start_date``, or later so that no scheduled run processes a day before
        ``first_date`` (a run processes the day before its logical date)."""
        if self.first_date is None:
            return self.start_date
        return max(self.start_date, self.first_date + dt.timedelta(days=1))

    def dag_end(self) -> dt.date | None:
        """The last day of the DAGs (their end is the end of this day): the logical date of the run that
        processes ``last_date``; no later scheduled run exists."""
        return self.last_date + dt.timedelta(days=1) if self.last_date is not None else None

    def with_data(self, dates: list[dt.date]) -> tuple[list[dt.date], str | None]:
        """``dates`` within ``first_date``..``last_date``, and why any were left out (None: none were)."""
        kept = [d for d in dates if (self.first_date is None or d >= self.first_date)
                and (self.last_date is None or d <= self.last_date)]
        if len(kept) == len(dates):
            return kept, None
        left = [d for d in dates if d not in kept]
        span = (f"{left[0]}" if len(left) == 1 else f"{len(left)} days ({', '.join(map(str, left))})"
                if len(left) <= 4 else f"{len(left)} days from {left[0]} to {left[-1]}")
        bounds = " and ".join(f"schedule.{k} {v}" for k, v in (("first_date", self.first_date),
                                                               ("last_date", self.last_date)) if v is not None)
        return kept, f"{span} outside the pipeline's data ({bounds}): no data there, nothing to process"


class PipelineSpec(_Model):
    """A whole pipeline: one model, its data, its checks and its schedules."""

    name: PipelineName
    description: str = ""
    owner: str = "ml-platform"
    tags: list[str] = Field(default_factory=list)
    warehouse: WarehouseSpec = WarehouseSpec()
    source: Annotated[PostgresSource | FilesSource, Field(discriminator="kind")]
    labels: LabelsSpec | None = None
    entity_key: Ident
    entity_key_source: SourceName | None = None
    entity_key_type: Literal["int", "text"] = "int"
    date_column: Ident = "as_of_date"
    date_column_source: SourceName | None = None
    date_format: str | None = None
    features: list[FeatureSpec] = Field(min_length=1)
    target: TargetSpec
    validation: ValidationSpec = ValidationSpec()
    training: TrainingSpec
    evaluation: EvaluationSpec
    promotion: PromotionSpec
    fairness: FairnessSpec | None = None
    explain: ExplainSpec = ExplainSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    scoring: ScoringSpec = ScoringSpec()
    rollout: RolloutSpec = RolloutSpec()
    alerts: AlertsSpec = AlertsSpec()
    schedule: ScheduleSpec = ScheduleSpec()

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineSpec:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features are listed twice: {dupes}; keep one entry each")
        reserved = {self.entity_key, self.date_column, self.target.name}
        clash = sorted(reserved.intersection(names))
        if clash:
            raise ValueError(
                f"{clash} is used both as a feature and as entity_key/date_column/target; "
                "a feature must be a separate column"
            )
        if self.target.label_delay_days > 0 and self.labels is None:
            raise ValueError("target.label_delay_days > 0 needs a 'labels' section saying where labels land; "
                             "when each landing file carries the target column, set label_delay_days: 0 and "
                             "leave 'labels' out (the label is then taken from the batch)")
        headers: dict[str, str] = {}
        for col, src in self.source_columns().items():
            if src in headers:
                raise ValueError(f"source column {src!r} is used by both {headers[src]!r} and {col!r}; "
                                 "each column of the file maps to one warehouse column")
            headers[src] = col
        rc = self.validation.row_count
        if rc.max is not None:
            most = rc.max * self.monitoring.window_days
            if most < self.monitoring.min_rows:
                raise ValueError(
                    f"monitoring.min_rows ({self.monitoring.min_rows}) is more than a monitoring window can hold: "
                    f"validation.row_count.max ({rc.max}) x monitoring.window_days ({self.monitoring.window_days}) "
                    f"= {most}, so every window would be 'insufficient data'; lower monitoring.min_rows to "
                    f"{most} or less, or widen monitoring.window_days")
            t = self.training
            most = rc.max * (t.window_days - t.holdout_days)
            if most < t.min_rows:
                raise ValueError(
                    f"training.min_rows ({t.min_rows}) is more than the training window can hold: "
                    f"validation.row_count.max ({rc.max}) x {t.window_days - t.holdout_days} training days "
                    f"(window_days - holdout_days) = {most}, so training could never run; lower "
                    f"training.min_rows to {most} or less, or widen training.window_days")
        known = set(names)
        for s in self.evaluation.slices:
            if s not in known:
                raise ValueError(f"evaluation.slices: {s!r} is not a feature; slices must be features")
        for c in list(self.monitoring.columns) + list(self.monitoring.trigger.critical_features):
            if c not in known:
                raise ValueError(f"monitoring: {c!r} is not a feature; list only feature names")
        is_clf = self.target.task == "binary_classification"
        allowed = set(ClassificationMetric.__args__ if is_clf else RegressionMetric.__args__)
        wrong = [m for m in self.evaluation.metrics if m not in allowed]
        wrong += [g.metric for g in self.promotion.gates if g.metric not in allowed]
        if wrong:
            raise ValueError(
                f"metrics {sorted(set(wrong))} do not fit a {self.target.task} target; "
                f"use some of {sorted(allowed)}"
            )
        gated = {g.metric for g in self.promotion.gates}
        missing = gated - set(self.evaluation.metrics)
        if missing:
            raise ValueError(f"promotion gates use {sorted(missing)}, which evaluation.metrics does not compute")
        if not any(f.model_input for f in self.features):
            raise ValueError("every feature has model_input: false; at least one feature must be a model input")
        if self.fairness is not None:
            self._check_fairness(known, is_clf)
        n_inputs = sum(f.model_input for f in self.features)
        if self.scoring.explain is not None and self.scoring.explain.top_k > n_inputs:
            raise ValueError(f"scoring.explain.top_k is {self.scoring.explain.top_k} but the model has only "
                             f"{n_inputs} input features; set top_k to at most {n_inputs}")
        if self.promotion.approval == "required" and self.schedule.max_active_runs < 2:
            raise ValueError(
                "promotion.approval: required keeps a retrain run open until someone answers (up to "
                f"promotion.approval_timeout_hours={self.promotion.approval_timeout_hours:g}); with "
                "schedule.max_active_runs: 1 the next scheduled run (and its predictions) would wait behind it. "
                "Set schedule.max_active_runs to 2 or more (writes are guarded by locks)")
        drop, primary = self.monitoring.trigger.performance_drop_abs, self.evaluation.primary_metric
        if drop is not None and primary in BOUNDED_0_1 and drop > 1:
            # in the metric's own units: an RMSE may drop by 40, a metric bounded by 0..1 never by more than 1
            raise ValueError(
                f"monitoring.trigger.performance_drop_abs is {drop:g}, in the units of the primary metric "
                f"{primary}, which lies between 0 and 1, so a drop of {drop:g} can never happen; use a value in "
                "(0, 1], e.g. 0.05")
        trigger = self.monitoring.trigger
        if primary in TARGET_UNITS and "performance_drop_abs" not in trigger.model_fields_set and drop is not None:
            # 0.05 of an RMSE or MAE in the target's units (rentals, euros) is noise: without a value in those
            # units from the spec, the realized-performance trigger is off (docs/SPEC.md says so)
            return self.model_copy(update={"monitoring": self.monitoring.model_copy(update={
                "trigger": trigger.model_copy(update={"performance_drop_abs": None})})})
        return self

    @model_validator(mode="after")
    def _date_format(self) -> PipelineSpec:
        fmt = self.date_format
        if fmt is None:
            return self
        if not isinstance(self.source, FilesSource):
            raise ValueError("date_format reads the date column of landing files (source.kind: files); a postgres "
                             "source's date column is read as a date - remove date_format")
        probe = dt.date(2026, 11, 21)
        try:
            ok = dt.datetime.strptime(probe.strftime(fmt), fmt).date() == probe
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"date_format {fmt!r} does not read a date back (it needs the year, month and day, "
                             "e.g. '%d-%m-%Y', '%m/%d/%Y' or '%Y-%m-%d %H:%M:%S')")
        return self

    def _check_fairness(self, known: set[str], is_clf: bool) -> None:
        fair = self.fairness
        assert fair is not None
        if not is_clf:
            raise ValueError("fairness applies to binary_classification targets (selection rate, TPR, FPR); "
                             "remove the fairness section for a regression target")
        types = {f.name: f.type for f in self.features}
        for col in fair.sensitive:
            if col not in known:
                raise ValueError(f"fairness.sensitive: {col!r} is not a column of features; declare it under "
                                 f"features (with model_input: false if the model must not use it)")
            if types[col] == "float":
                raise ValueError(f"fairness.sensitive: {col!r} is a float; group metrics need a category, bool or "
                                 "int column (bin it into bands in the source, e.g. age_band)")
        for where, rules in (("gates", fair.gates), ("monitor", fair.monitor)):
            for g in rules:
                if g.attribute is not None and g.attribute not in fair.sensitive:
                    raise ValueError(f"fairness.{where}: attribute {g.attribute!r} is not listed in "
                                     f"fairness.sensitive {fair.sensitive}")
        seen = set()
        for r in fair.monitor:
            for attr in ([r.attribute] if r.attribute else fair.sensitive):
                if (attr, r.metric) in seen:
                    raise ValueError(f"fairness.monitor: {r.metric} of {attr!r} is listed twice; keep one threshold")
                seen.add((attr, r.metric))

    # ---- derived names (all pass check_identifier because name <= 30 chars) ----------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def model_feature_names(self) -> list[str]:
        """The features the model is trained on (``model_input: true``)."""
        return [f.name for f in self.features if f.model_input]

    def source_columns(self) -> dict[str, str]:
        """Warehouse column name -> the column's name in the landing file / source table."""
        out = {self.entity_key: self.entity_key_source or self.entity_key,
               self.date_column: self.date_column_source or self.date_column}
        out.update({f.name: f.source or f.name for f in self.features})
        out[self.target.name] = self.target.source or self.target.name
        return out

    @property
    def labels_from_batch(self) -> bool:
        """True when labels come only from the landing batch (no ``labels`` section)."""
        return self.labels is None

    def table(self, kind: str) -> tuple[str, str]:
        """(schema, table) for a table kind of this pipeline."""
        w = self.warehouse
        n = self.name
        mapping = {
            "raw": (w.raw_schema, f"{n}_batches"),
            "features": (w.features_schema, n),
            "quarantine": (w.quarantine_schema, n),
            "labels": (w.features_schema, f"{n}_labels"),
            "predictions": (w.predictions_schema, n),
            "predictions_latest": (w.predictions_schema, f"{n}_latest"),
            "shadow_predictions": (w.predictions_schema, f"{n}_shadow"),
            "reference": (w.monitoring_schema, f"{n}_reference"),
        }
        try:
            return mapping[kind]
        except KeyError:
            raise KeyError(f"unknown table kind {kind!r}; one of {sorted(mapping)}") from None

    @property
    def retrain_dag_id(self) -> str:
        return f"{self.name}_retrain"

    @property
    def monitor_dag_id(self) -> str:
        return f"{self.name}_monitor"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class SpecError(PermanentError, ValueError):
    """A spec file could not be loaded. The message names the file, the key and the fix."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid pipeline spec {self.path}:\n{lines}")


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("postgres", "files") or str(item).startswith("function-after"):
            continue  # discriminator tags / validator wrappers add noise to the path
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    key = _loc(err.get("loc", ()))
    kind = err.get("type", "")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"key '{key}': unknown key; remove it or check its spelling against docs/SPEC.md"
    if kind == "missing":
        return f"key '{key}': required key is missing; add it (see docs/SPEC.md)"
    if kind == "literal_error":
        return f"key '{key}': {msg}"
    if kind == "string_type" and isinstance(err.get("input"), bool):
        return f"key '{key}': {_yaml_bool_hint(err['input'])}"
    return f"key '{key}': {msg} (got {err.get('input')!r})" if kind.endswith("_type") or kind.endswith(
        "_parsing") else f"key '{key}': {msg}"


def parse_spec(data: Any, path: str | Path = "<memory>") -> PipelineSpec:
    """Validate an already-parsed mapping into a :class:`PipelineSpec`."""
    if not isinstance(data, dict):
        raise SpecError(path, ["the file must hold a mapping (key: value pairs) at the top level"])
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(path, [_describe(e) for e in exc.errors()]) from None


def load_spec(path: str | Path) -> PipelineSpec:
    """Load and validate one spec file. Raises :class:`SpecError` with a readable message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        # libyaml's loader when PyYAML has it (~10x faster; every task of a run loads its spec)
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise SpecError(path, [f"not valid YAML: {exc}"]) from None
    spec = parse_spec(data, path)
    if spec.name != path.stem:
        raise SpecError(path, [f"key 'name': {spec.name!r} must match the file name {path.stem!r}; "
                               f"rename the file to {spec.name}.yaml or change name"])
    return spec


DEFAULT_SPEC_DIR = Path(__file__).resolve().parents[1] / "pipelines"


def spec_dir() -> Path:
    """Where the pipeline specs are: ``$AIRTRAIN_SPEC_DIR`` (the Docker image sets it, since an
    installed package has no ``include/pipelines`` beside it), else the repository's folder."""
    return Path(os.environ.get("AIRTRAIN_SPEC_DIR") or DEFAULT_SPEC_DIR)


def excluded_pipelines() -> set[str]:
    """Specs in the folder that are not loaded: ``$AIRTRAIN_EXCLUDE_PIPELINES`` (comma-separated names;
    the local stack sets ``churn``, the demo, when ``DEMO_DAYS=0``)."""
    return {n.strip() for n in os.environ.get("AIRTRAIN_EXCLUDE_PIPELINES", "").split(",") if n.strip()}


class SpecScan(NamedTuple):
    """Every spec of a folder: the ones that load, and one :class:`SpecError` per file that does not."""

    specs: list[PipelineSpec]
    errors: list[SpecError]


def scan_specs(directory: str | Path | None = None) -> SpecScan:
    """Load every ``*.yaml`` spec in ``directory`` (default :func:`spec_dir`), sorted by name, and
    collect the errors instead of stopping at the first: one broken spec breaks only itself (the DAG
    files, the UI page and ``airtrain migrate`` go on with the others and name the broken ones). The
    :func:`excluded_pipelines` are not loaded."""
    directory = Path(directory) if directory is not None else spec_dir()
    skip = excluded_pipelines()
    specs: list[PipelineSpec] = []
    errors: list[SpecError] = []
    seen: dict[str, Path] = {}
    for p in sorted(directory.glob("*.yaml")):
        if p.stem in skip:
            continue
        try:
            spec = load_spec(p)
        except SpecError as exc:
            errors.append(exc)
            continue
        if spec.name in seen:
            errors.append(SpecError(p, [f"key 'name': {spec.name!r} is also the name of {seen[spec.name]}; "
                                        "every pipeline needs its own name"]))
            continue
        seen[spec.name] = p
        specs.append(spec)
    return SpecScan(specs, errors)


class SpecsError(SpecError):
    """Some specs of a folder do not load (each one's message names its file, key and fix)."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.path = errors[0].path
        self.problems = [p for e in errors for p in e.problems]


def load_specs(directory: str | Path | None = None) -> list[PipelineSpec]:
    """Every spec in ``directory`` (default :func:`spec_dir`), sorted by name; raises one
    :class:`SpecsError` naming every file that does not load (never only the first). Code that must
    go on with the valid specs (DAG files, UI, ``airtrain migrate``) uses :func:`scan_specs`."""
    scan = scan_specs(directory)
    if scan.errors:
        raise SpecsError(scan.errors)
    return scan.specs


# --------------------------------------------------------------------------------------------
# Reference documentation (docs/SPEC.md is generated from the models, so every key is listed)
# --------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("airtrain.spec.", "")
    # Annotated[X, metadata...] -> X (metadata may nest brackets, so strip it by counting them)
    while "Annotated[" in text:
        i = text.index("Annotated[")
        depth, j, comma = 0, i + len("Annotated["), None
        while j < len(text):
            ch = text[j]
            if ch == "[":
                depth += 1
            elif ch == "]":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0 and comma is None:
                comma = j
            j += 1
        inner = text[i + len("Annotated["):comma if comma is not None else j]
        text = text[:i] + inner + text[j + 1:]
    text = re.sub(r"<class '([^']+)'>", r"\1", text)
    text = text.replace("NoneType", "null").replace("datetime.date", "date")
    return text


KEY_DOCS: dict[str, str] = {
    'labels.schema': 'Schema of the labels source table.',
    'labels.table': 'Labels source table (entity key, date column, target, available_column).',
    'name': 'Pipeline name; must equal the file name. Lower-case identifier, at most 30 characters (derived names must fit 63 bytes).',
    'description': 'Free text shown in the DAG docs.',
    'owner': 'Airflow owner of every task.',
    'tags': 'Extra Airflow tags (airtrain and retrain are always added).',
    'warehouse.conn_id': 'Airflow connection id of the warehouse (e.g. AIRFLOW_CONN_WAREHOUSE).',
    'warehouse.raw_schema': 'Schema of the raw landing tables.',
    'warehouse.features_schema': 'Schema of validated features and labels.',
    'warehouse.quarantine_schema': 'Schema of rejected rows.',
    'warehouse.registry_schema': 'Schema of the model registry (versions, champions, promotion log, evaluations).',
    'warehouse.predictions_schema': 'Schema of prediction tables and views (readable by reader_role).',
    'warehouse.monitoring_schema': 'Schema of ingest/validation/drift results.',
    'warehouse.reader_role': 'NOLOGIN read-only role: the predictions schema, the labels, registry champions/promotion_log/'
                             'evaluations and monitoring ingest/validation/drift results (not artifacts, feature rows or '
                             'quarantine). Logins inherit it: `python -m airtrain.schema create-reader-login <name>`.',
    'source': "Where each day's batch comes from; `kind` picks the variant.", 'source.kind': '`postgres` (a table in the warehouse) or `files` (a landing folder).',
    'source.schema': '(postgres) schema of the source table.',
    'source.table': '(postgres) source table.',
    'source.date_column': '(postgres) column holding the partition date.',
    'source.format': '(files) `csv` or `parquet`.',
    'source.wait_minutes': "(files) How long after the end of a partition's day (in schedule.timezone) its landing file "
                           "may still arrive. Until then a run waits for a missing file (deferred: no worker slot is "
                           "held, the triggerer polls); after it a missing file fails the run at once, without retries.",
    'source.ready_marker': "(files) The landing completeness convention: a file name with '{date}' (e.g. "
                           "`{date}.csv.ready`, `_SUCCESS_{date}`) that the upstream system writes in the same folder "
                           "once the day's file is complete. Set, a file without its marker is not complete: the run "
                           "waits for the marker, and ingest never reads a file without it. The marker may be empty "
                           "or carry the file's `size` and/or `sha256` (JSON, or a `sha256sum` line); the file must "
                           "then match it, so a marker written early does not let a half file in. Unset: a file is "
                           "complete once it exists (deliver by write-then-rename). README \"Landing files\".",
    'entity_key': 'Column identifying the entity (customer); with the date, the primary key.',
    'entity_key_type': '`int` (bigint) or `text`.',
    'entity_key_source': 'Header of the entity key in the landing file / source table when it differs from '
                         '`entity_key` (e.g. `customerID`); default: the same as `entity_key`.',
    'date_column_source': 'Header of the date column in the source when it differs from `date_column`. A landing '
                          'file without a date column gets the partition date (from its file name).',
    'date_column': 'Column holding the snapshot date of a row.',
    'date_format': '(files) How the date column is written, as a strptime format (e.g. `%d-%m-%Y`, `%m/%d/%Y`, '
                   '`%Y-%m-%d %H:%M:%S` - a time of day is dropped, the row belongs to its day). Default: '
                   '`YYYY-MM-DD`. A value that does not match quarantines the row.',
    'features': "The model's input columns; each one generates validation rules.",
    'features[].name': 'Warehouse column name (a safe identifier: see "Names" in docs/SPEC.md).',
    'features[].source': 'Header of the column in the landing file / source table when it differs from `name` '
                         '(e.g. `MonthlyCharges`, `Total Charges`); matched exactly after trimming spaces.',
    'features[].type': '`int`, `float`, `category` or `bool`.',
    'features[].nullable': 'Whether nulls are allowed (otherwise a not-null rule).',
    'features[].min': 'Numeric lower bound (inclusive).',
    'features[].max': 'Numeric upper bound (inclusive).',
    'features[].allowed': 'Allowed categories (category features only).',
    'features[].on_fail': 'What a failing row does: `quarantine` (row set aside), `warn` (recorded) or `block` (batch refused).',
    'features[].description': 'Free text.',
    'features[].model_input': '`false`: the column is ingested, validated and kept in the features table but not '
                              'given to the model (e.g. a sensitive attribute used only for fairness metrics).',
    'features[].since': 'First partition date that carries the column (a feature added to a running pipeline). '
                        'Earlier partitions may lack it: they are validated with the column NULL (a NULL is '
                        'accepted there), so re-runs and backfills of older dates work. docs/CHANGING_A_SPEC.md.',
    'features[].until': 'Last partition date that carries the column (the source stopped sending it). Later '
                        'partitions may lack it and get NULL (a model that uses it imputes it: retrain without it, '
                        'then remove it). docs/CHANGING_A_SPEC.md.',
    'target': 'The label to predict.',
    'target.name': 'Label column: in the labels table, in `features.<name>_labels` and, when the file carries it, '
                   'in the raw batch. Never used as a feature.',
    'target.source': 'Header of the target in the landing file when it differs from `name` (e.g. `Churn`).',
    'target.positive': 'Binary target: the value(s) meaning 1 (e.g. `"Yes"` — quote it). Without it a label must '
                       'be 1/0, true/false or yes/no.',
    'target.negative': 'Binary target: the value(s) meaning 0. Without it every other non-blank value is 0; with '
                       'it, any other value quarantines the row.',
    'target.task': '`binary_classification` or `regression`.',
    'target.label_delay_days': 'Days after the snapshot until the label is known. 0 with no `labels` section: the '
                               'label comes from the landing file itself. > 0 needs a `labels` section.',
    'validation': 'Batch-level rules on top of the per-feature ones.',
    'validation.row_count': 'Bounds on the batch size.',
    'validation.row_count.min': 'Minimum rows in a batch.',
    'validation.row_count.max': 'Maximum rows in a batch (null: no maximum).',
    'validation.row_count.on_fail': '`block` or `warn`.',
    'validation.freshness': 'How old a partition may be when it is validated.',
    'validation.freshness.max_age_days': 'Maximum age in days, relative to the run date.',
    'validation.freshness.on_fail': '`block` or `warn`.',
    'validation.unique_key_on_fail': 'Duplicate or null keys: `quarantine` (all copies), `warn` or `block`.',
    'validation.suites': 'Hand-written suites: JSON lists of {type, kwargs, severity} (see airtrain/validation.py).',
    'training': 'How the model is trained.',
    'training.estimator': 'scikit-learn class path; only `sklearn.*` estimators are accepted.',
    'training.params': 'Constructor parameters of the estimator.',
    'training.window_days': 'Days of labeled data used (train + holdout), ending at the newest labeled day.',
    'training.holdout_days': 'The newest days of the window, held out for evaluation (time-based split).',
    'training.min_rows': 'Fewer training rows than this fails training with a clear message.',
    'training.random_state': 'Seed passed to the estimator and the search.',
    'training.cadence': "`daily`: every scheduled retrain run trains a challenger. `on_trigger`: scheduled runs "
                        "only ingest, validate and score; a challenger is trained when the monitor triggers a "
                        "retrain, when a run is started with `force_train` or a `trigger_reason`, or when there "
                        "is no champion yet.",
    'training.search': 'Optional hyperparameter search (time-series CV).',
    'training.search.method': '`grid` or `random`.',
    'training.search.param_grid': 'Estimator parameter name → list of values.',
    'training.search.cv': 'Number of time-series folds.',
    'training.search.n_iter': 'Candidates for random search.',
    'evaluation': 'Metrics on the holdout.',
    'evaluation.metrics': 'Classification: roc_auc, average_precision, f1, precision, recall, accuracy, log_loss, brier. Regression: rmse, mae, r2, mape.',
    'evaluation.primary_metric': 'The metric used by the search; one of metrics.',
    'evaluation.slices': 'Feature columns whose values get their own metrics.',
    'promotion': 'The gate a challenger must pass to become the champion.',
    'promotion.gates': 'One entry per metric; all must pass. Besides them, the primary metric must not be worse than the champion\'s on the same rows, unless a gate on it sets `max_regression_abs` / `max_regression_rel` (then that is the tolerance).',
    'promotion.approval': '`none`: a challenger that passes the gate is promoted at once. `required`: it waits for a '
                          'person at the `approve_promotion` task (Airflow human-in-the-loop: UI *Required actions*, '
                          'or the REST API), with the evaluation summary in the request; approve promotes it (the '
                          'approver and comment go into `registry.promotion_log`), reject or timeout keeps the '
                          'champion (`registry.approvals`). The day is scored by the champion without waiting. '
                          'Needs `schedule.max_active_runs` >= 2, so a pending approval never holds up the next run.',
    'promotion.approval_timeout_hours': 'With approval required: hours to wait for an answer; then the request is '
                                        'rejected as `timed_out` (applied by the scheduler).',
    'promotion.approvers': 'With approval required: Airflow user ids that may answer (HITL `assigned_users`); '
                           'empty: anyone the auth manager lets edit the DAG (roles with PUT on the DAG\'s HITL '
                           'details). Roles are granted in the auth manager, not here.',
    'promotion.gates[].metric': 'A metric from evaluation.metrics (direction known: log_loss/brier/rmse/mae/mape lower is better).',
    'fairness': 'Optional: group metrics per sensitive attribute at evaluation (fairlearn MetricFrame: count, '
                'selection rate, TPR, FPR, the primary metric) and the disparities demographic_parity_difference '
                'and equalized_odds_difference, stored in registry.fairness; gates on them.',
    'fairness.sensitive': 'Columns of `features` (model inputs or `model_input: false`) whose groups are compared.',
    'fairness.min_group_rows': 'Groups with fewer holdout rows (or no positive or no negative label) get their '
                               'metrics stored but are left out of the disparity measures.',
    'fairness.gates': 'Promotion gates on disparities: all must pass (force_promote with a reason overrides, '
                      'like the metric gates).',
    'fairness.gates[].metric': '`equalized_odds_difference` (max of the TPR and FPR gaps between groups) or '
                               '`demographic_parity_difference` (selection-rate gap).',
    'fairness.gates[].attribute': 'The sensitive attribute it applies to (default: every one in `sensitive`).',
    'fairness.gates[].threshold': 'Largest disparity allowed for the challenger (0..1).',
    'fairness.gates[].max_regression_abs': 'Largest increase of the disparity vs the champion, measured on the '
                                           'same rows.',
    'fairness.monitor': 'Monitor alerts on realized labels: each window, the champion\'s published predictions '
                        'of the newest `monitoring.window_days` labeled days are joined with their labels and the '
                        'disparity is measured per attribute (fairlearn, as at evaluation) and stored in '
                        'monitoring.fairness_metrics; above the threshold the monitor alerts (once per window). '
                        'Fewer than `min_group_rows` labeled rows (or one label only) in all but one group: '
                        '`not_evaluated`, never "ok".',
    'fairness.monitor[].metric': '`equalized_odds_difference` or `demographic_parity_difference`.',
    'fairness.monitor[].threshold': 'Alert when the realized disparity is above this (0..1).',
    'fairness.monitor[].attribute': 'The sensitive attribute it watches (default: every one in `sensitive`).',
    'explain': 'Global feature importance per model version, stored in registry.feature_importance.',
    'explain.importance': 'Compute permutation importance (scikit-learn, on the whole Pipeline: raw spec '
                          'features) for challenger and champion on the same holdout rows at evaluation.',
    'explain.importance_rows': 'Holdout rows used (a seeded sample when the holdout is larger).',
    'explain.importance_repeats': 'Shuffles per feature (n_repeats); mean and std are stored.',
    'monitoring': 'Drift monitoring (the monitor DAG).',
    'monitoring.window_days': 'Days per monitoring window.',
    'monitoring.min_rows': "Fewer rows: 'insufficient data', never drift.", 'monitoring.sample_rows': 'Larger windows are sampled deterministically to this size.',
    'monitoring.default_method': 'Drift test for columns not listed in `columns`.',
    'monitoring.default_threshold': 'Drift threshold for columns not listed in `columns`.',
    'monitoring.columns': 'Per-column drift method/threshold.',
    'monitoring.columns.<name>.method': 'psi, ks, wasserstein, jensenshannon, chisquare or kl_div.',
    'monitoring.columns.<name>.threshold': 'Threshold for that column.',
    'monitoring.trigger': 'When drift starts a retrain.',
    'monitoring.trigger.drift_share': 'Share of drifted features that triggers.',
    'monitoring.trigger.critical_features': 'Features whose drift alone triggers.',
    'monitoring.trigger.prediction_drift': 'Whether drift of the predictions triggers.',
    'monitoring.trigger.performance_drop_abs': "Drop of the primary metric vs the champion's evaluation that triggers, "
    "in the metric's own units (0.05 of roc_auc; 40 of an rmse in rentals). The drop is measured towards worse: for "
    "higher-is-better metrics the fall of the realized value below the evaluation value, for lower-is-better ones "
    "(rmse, mae, mape, log_loss, brier) the rise of the realized error above it. At most 1 for a metric bounded "
    "by 0..1. Default 0.05, except for rmse/mae (the target's own units): unset, no performance trigger - set a "
    "value that matters in those units.", 'monitoring.trigger.persistence': 'Consecutive drifted windows needed.',
    'monitoring.trigger.cooldown_days': 'Days after a triggered retrain during which no other is triggered.',
    'scoring': 'Batch predictions.',
    'scoring.shadow': "Also score the run's own challenger (when it was not promoted) into predictions.<name>_shadow; "
                      "one shadow version per date (a re-run of the date replaces it).",
    'scoring.partitions': 'Shards of the entity space scored in parallel (mapped tasks), when `rows_per_shard` is '
                          'not set.',
    'scoring.rows_per_shard': 'Shards follow the data: each date is scored in ceil(rows / rows_per_shard) shards '
                              '(counted when scoring begins; mapped at run time), at most `max_shards`. Unset: '
                              '`partitions` shards.',
    'scoring.max_shards': 'Upper bound of the shards of one date with `rows_per_shard` (the mapped tasks of one run).',
    'scoring.batch_rows': 'Rows per Arrow record batch while scoring (bounds memory).',
    'scoring.explain': 'Optional: per-prediction explanations. Each scored row gets the top_k raw features '
                       'that moved its score most, in the prediction tables\' columns `explain_features` '
                       '(text[]) and `explain_contributions` (double precision[], same order). Unset: no '
                       'columns, no cost. See README "Per-prediction explanations".',
    'scoring.explain.top_k': 'Features per row, largest absolute contribution first (at most the number of model inputs).',
    'scoring.explain.method': '`baseline_substitution`: contribution of a feature = score of the row minus the '
                              'score with that feature set to its training reference (the median / most frequent '
                              'value the model\'s own imputer learned). Costs about one extra predict per model '
                              'input and batch (docs/BENCHMARKS.md).',
    'rollout': 'How a challenger that passed the gate (and the approval, if required) reaches the entities.',
    'rollout.strategy': '`immediate`: it becomes the champion for every entity at once. `canary`: it becomes the '
                        '*candidate* (`registry.rollouts`): a stable hash of the entity key puts `canary_fraction` '
                        'of the entities in its arm, the rest stay with the champion (both in predictions.<name>, '
                        'column `arm`); the monitor graduates or aborts it as labels arrive.',
    'rollout.canary_fraction': 'Share of the entities scored by the candidate (md5 of the rollout salt and the key).',
    'rollout.min_labeled': 'Labeled rows each arm needs before the monitor decides (fewer: wait).',
    'rollout.max_days': 'Days after the canary started without a decision: it is aborted (the champion stays).',
    'rollout.confidence': 'Confidence of the bootstrap interval on the primary metric difference candidate - '
                          'champion (improvement: the sign is flipped for lower-is-better metrics).',
    'rollout.margin': 'Graduate when the interval\'s lower bound is above -margin (0: the candidate must be better '
                      'with that confidence; > 0: not worse by more than margin). Abort when its upper bound is '
                      'below 0.',
    'rollout.bootstrap_samples': 'Bootstrap resamples (stratified: each arm resampled within itself).',
    'rollout.seed': 'Seed of the bootstrap (a decision can be recomputed exactly from the stored rows).',
    'alerts': 'Notifications on failures and triggered retrains (always logged; these add channels).',
    'alerts.slack_conn_id': 'Airflow Slack webhook connection id.',
    'alerts.smtp_to': 'E-mail recipients (Airflow SMTP connection).',
    'alerts.webhook_conn_id': 'Airflow HTTP connection for a generic webhook.',
    'schedule': "Airflow scheduling of the pipeline's DAGs.",
    'schedule.start_paused': 'The DAGs appear paused the first time (land data, then unpause them in the UI or '
                             'with `airflow dags unpause`). Has no effect on DAGs that exist already.',
    'schedule.retrain': 'Cron or @preset of the retrain DAG. `null`: no scheduled runs (a history-only pipeline: '
                        'manual runs with `date`/`end_date` only; Airflow\'s backfill needs a cron schedule - use '
                        '`last_date` for that instead).',
    'schedule.first_date': 'The first partition date with data. No scheduled run processes an earlier day (the DAGs '
                           'start the day after it), and any run for earlier days skips them with the reason '
                           '(`check_params` logs it; `route` is skipped with it when nothing is left).',
    'schedule.last_date': 'The last partition date with data (a pipeline on historical data). No scheduled run '
                          'processes a later day (the DAGs end with the run for it), so unpausing creates no run that '
                          'waits for a file that never comes; backfills within the range work. Runs for later days '
                          'skip them with the reason.',
    'schedule.monitor': 'Cron or @preset of the monitor DAG\'s time condition (only with `monitor_on: '
                        'predictions_or_cron`).',
    'schedule.monitor_on': '`predictions`: the monitor DAG runs when the retrain DAG publishes predictions (the '
                           'Airflow Asset `airtrain.<name>.predictions`) and checks the published date. '
                           '`predictions_or_cron`: also on `schedule.monitor`; such a time run checks the day before '
                           'its logical date only when that day\'s predictions are published, and skips otherwise.',
    'schedule.start_date': 'Fixed start date (catchup is off).',
    'schedule.timezone': 'IANA timezone of the schedule and of partition dates.',
    'schedule.retries': 'Retries per task (at least 2).',
    'schedule.retry_delay_minutes': 'First retry delay; doubles on each retry (exponential backoff).',
    'schedule.max_active_runs': 'Concurrent runs per DAG (writes are also guarded by advisory locks).'}


def spec_reference() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) for every key of a spec."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            key = f"{prefix}{f.alias or name}"
            ann = f.annotation
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            desc = f.description or KEY_DOCS.get(key, "")
            sub = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                sub = [ann]
            if sub and getattr(ann, "__origin__", None) not in (list, dict):
                rows.append((key, " | ".join(s.__name__ for s in sub), "section" if not f.is_required() else
                             "required", desc or (sub[0].__doc__ or "").strip().split("\n")[0]))
                for s in sub:
                    walk(s, f"{key}.")
                continue
            origin = getattr(ann, "__origin__", None)
            args = getattr(ann, "__args__", ())
            if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                rows.append((key, f"list of {args[0].__name__}", default, desc))
                walk(args[0], f"{key}[].")
                continue
            if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
                rows.append((key, f"map of name → {args[1].__name__}", default, desc))
                walk(args[1], f"{key}.<name>.")
                continue
            rows.append((key, _type_name(ann), default, desc))

    walk(PipelineSpec, "")
    seen: set[str] = set()
    return [r for r in rows if not (r[0] in seen or seen.add(r[0]))]


if __name__ == "__main__":  # python -m airtrain.spec  → the key table of docs/SPEC.md
    for key, typ, default, desc in spec_reference():
        print(f"| `{key}` | {typ.replace('|', '&#124;')} | {default.replace('|', '&#124;')} | {desc} |")
