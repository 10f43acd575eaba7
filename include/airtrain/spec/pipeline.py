"""The whole spec (:class:`PipelineSpec`): one model, its data, its checks and its schedules, with the
checks across sections and the names derived from it (tables, DAG ids).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from airtrain.spec.monitoring import MonitoringSpec
from airtrain.spec.names import Ident, PipelineName, SourceName, SpecModel
from airtrain.spec.release import PromotionSpec, RolloutSpec
from airtrain.spec.schedule import AlertsSpec, ScheduleSpec
from airtrain.spec.scoring import ScoringSpec
from airtrain.spec.source import (
    FeatureSpec,
    FilesSource,
    LabelsSpec,
    PostgresSource,
    TargetSpec,
    WarehouseSpec,
)
from airtrain.spec.training import (
    BOUNDED_0_1,
    TARGET_UNITS,
    ClassificationMetric,
    EvaluationSpec,
    ExplainSpec,
    FairnessSpec,
    RegressionMetric,
    TrainingSpec,
)
from airtrain.spec.validation import ValidationSpec


class PipelineSpec(SpecModel):
    """A whole pipeline: one model, its data, its checks and its schedules."""

    name: PipelineName = Field(description=(
        'Pipeline name; must equal the file name. Lower-case identifier, at most 30 characters (derived '
        'names must fit 63 bytes).'))
    description: str = Field("", description='Free text shown in the DAG docs.')
    owner: str = Field("ml-platform", description='Airflow owner of every task.')
    tags: list[str] = Field(default_factory=list, description=(
        'Extra Airflow tags (airtrain and retrain are always added).'))
    warehouse: WarehouseSpec = WarehouseSpec()
    source: Annotated[PostgresSource | FilesSource, Field(description=(
        "Where each day's batch comes from; `kind` picks the variant."), discriminator="kind")]
    labels: LabelsSpec | None = None
    entity_key: Ident = Field(description=(
        'Column identifying the entity (customer); with the date, the primary key.'))
    entity_key_source: SourceName | None = Field(None, description=(
        'Header of the entity key in the landing file / source table when it differs from `entity_key` '
        '(e.g. `customerID`); default: the same as `entity_key`.'))
    entity_key_type: Literal["int", "text"] = Field("int", description='`int` (bigint) or `text`.')
    date_column: Ident = Field("as_of_date", description='Column holding the snapshot date of a row.')
    date_column_source: SourceName | None = Field(None, description=(
        'Header of the date column in the source when it differs from `date_column`. A landing file '
        'without a date column gets the partition date (from its file name).'))
    date_format: str | None = Field(None, description=(
        '(files) How the date column is written, as a strptime format (e.g. `%d-%m-%Y`, `%m/%d/%Y`, '
        '`%Y-%m-%d %H:%M:%S` - a time of day is dropped, the row belongs to its day). Default: '
        '`YYYY-MM-DD`. A value that does not match quarantines the row.'))
    features: list[FeatureSpec] = Field(min_length=1, description=(
        "The model's input columns; each one generates validation rules."))
    target: TargetSpec = Field(description='The label to predict.')
    validation: ValidationSpec = Field(ValidationSpec(), description=(
        'Batch-level rules on top of the per-feature ones.'))
    training: TrainingSpec = Field(description='How the model is trained.')
    evaluation: EvaluationSpec = Field(description='Metrics on the holdout.')
    promotion: PromotionSpec = Field(description=(
        'The gate a challenger must pass to become the champion.'))
    fairness: FairnessSpec | None = Field(None, description=(
        'Optional: group metrics per sensitive attribute at evaluation (fairlearn MetricFrame: count, '
        'selection rate, TPR, FPR, the primary metric) and the disparities demographic_parity_difference '
        'and equalized_odds_difference, stored in registry.fairness; gates on them.'))
    explain: ExplainSpec = Field(ExplainSpec(), description=(
        'Global feature importance per model version, stored in registry.feature_importance.'))
    monitoring: MonitoringSpec = Field(MonitoringSpec(), description=(
        'Drift monitoring (the monitor DAG).'))
    scoring: ScoringSpec = Field(ScoringSpec(), description='Batch predictions.')
    rollout: RolloutSpec = Field(RolloutSpec(), description=(
        'How a challenger that passed the gate (and the approval, if required) reaches the entities.'))
    alerts: AlertsSpec = Field(AlertsSpec(), description=(
        'Notifications on failures and triggered retrains (always logged; these add channels).'))
    schedule: ScheduleSpec = Field(ScheduleSpec(), description=(
        "Airflow scheduling of the pipeline's DAGs."))

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
