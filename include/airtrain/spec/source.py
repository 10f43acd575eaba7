"""Spec sections about the data: where the tables live (``warehouse``), the ``source`` of each day's
batch, the delayed ``labels``, the ``features`` and the ``target``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from airtrain.spec.names import Ident, Severity, SourceName, SpecModel, TextValues


class WarehouseSpec(SpecModel):
    """Where the pipeline's tables live."""

    conn_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")] = Field("warehouse", description=(
        'Airflow connection id of the warehouse (e.g. AIRFLOW_CONN_WAREHOUSE).'))
    raw_schema: Ident = Field("raw", description='Schema of the raw landing tables.')
    features_schema: Ident = Field("features", description='Schema of validated features and labels.')
    quarantine_schema: Ident = Field("quarantine", description='Schema of rejected rows.')
    registry_schema: Ident = Field("registry", description=(
        'Schema of the model registry (versions, champions, promotion log, evaluations).'))
    predictions_schema: Ident = Field("predictions", description=(
        'Schema of prediction tables and views (readable by reader_role).'))
    monitoring_schema: Ident = Field("monitoring", description=(
        'Schema of ingest/validation/drift results.'))
    reader_role: Ident = Field("predictions_reader", description=(
        'NOLOGIN read-only role: the predictions schema, the labels, registry '
        'champions/promotion_log/evaluations and monitoring ingest/validation/drift results (not '
        'artifacts, feature rows or quarantine). Logins inherit it: `python -m airtrain.schema '
        'create-reader-login <name>`.'))


class PostgresSource(SpecModel):
    kind: Literal["postgres"] = Field(description=(
        '`postgres` (a table in the warehouse) or `files` (a landing folder).'))
    schema_: Ident = Field(alias="schema", description='(postgres) schema of the source table.')
    table: Ident = Field(description='(postgres) source table.')
    date_column: Ident = Field(description='(postgres) column holding the partition date.')


class FilesSource(SpecModel):
    kind: Literal["files"] = Field(description=(
        '`postgres` (a table in the warehouse) or `files` (a landing folder).'))
    path: str = Field(description="folder of landing files, relative to the project root")
    format: Literal["csv", "parquet"] = Field("csv", description='(files) `csv` or `parquet`.')
    pattern: str = Field(
        default="{date}.csv",
        description="file name per partition; '{date}' is replaced by YYYY-MM-DD. A glob ('*', '?', '[...]', e.g. "
                    "'{date}-part-*.csv') delivers a date in several files: all that match, read in name order, "
                    "with the same columns",
    )
    wait_minutes: Annotated[float, Field(ge=0, le=10080)] = Field(360.0, description=(
        "(files) How long after the end of a partition's day (in schedule.timezone) its landing file may "
        'still arrive. Until then a run waits for a missing file (deferred: no worker slot is held, the '
        'triggerer polls); after it a missing file fails the run at once, without retries.'))
    ready_marker: str | None = Field(None, description=(
        "(files) The landing completeness convention: a file name with '{date}' (e.g. "
        "`{date}.csv.ready`, `_SUCCESS_{date}`) that the upstream system writes in the same folder "
        "once the day's file is complete. Set, a file without its marker is not complete: the run "
        "waits for the marker, and ingest never reads a file without it. The marker may be empty "
        "or carry the file's `size` and/or `sha256` (JSON, or a `sha256sum` line; a date in several "
        "files: one `sha256sum` line per file); the files must "
        "then match it, so a marker written early does not let a half file in. Unset: a file is "
        "complete once it exists (deliver by write-then-rename). docs/OPERATING.md \"Landing files\"."))

    @model_validator(mode="after")
    def _pattern_has_date(self) -> FilesSource:
        if "{date}" not in self.pattern:
            raise ValueError("source.pattern must contain '{date}', e.g. '{date}.csv'")
        marker = self.ready_marker
        # a marker the (glob) pattern matches would be read as a part of the day
        if marker is not None and ("{date}" not in marker or "/" in marker or "\\" in marker or ".." in marker
                                   or fnmatch.fnmatchcase(marker.replace("{date}", "D"), self.pattern.replace("{date}", "D"))):
            raise ValueError(f"source.ready_marker {marker!r} must be a file name with '{{date}}' (no '/', '\\' or "
                             "'..') that source.pattern does not match, e.g. '{date}.csv.ready' or '_SUCCESS_{date}'")
        if ".." in Path(self.path).parts or Path(self.path).is_absolute() or "\\" in self.path:
            raise ValueError(f"source.path {self.path!r} must be a folder relative to the project root, without "
                             "'..' (e.g. 'data/landing/churn')")
        if "/" in self.pattern or "\\" in self.pattern or ".." in self.pattern:
            raise ValueError(f"source.pattern {self.pattern!r} must be a file name (no '/', '\\' or '..'), "
                             "e.g. '{date}.csv'")
        return self


class LabelsSpec(SpecModel):
    """Where delayed labels come from: a Postgres table keyed like the features."""

    schema_: Ident = Field(alias="schema", description='Schema of the labels source table.')
    table: Ident = Field(description=(
        'Labels source table (entity key, date column, target, available_column).'))
    available_column: Ident = Field(
        default="label_available_on",
        description="date on which the label became known; rows later than the run date are ignored",
    )


FeatureType = Literal["int", "float", "category", "bool"]


class FeatureSpec(SpecModel):
    name: Ident = Field(description=(
        'Warehouse column name (a safe identifier: see "Names" in docs/SPEC.md).'))
    source: SourceName | None = Field(None, description=(
        'Header of the column in the landing file / source table when it differs from `name` (e.g. '
        '`MonthlyCharges`, `Total Charges`); matched exactly after trimming spaces.'))
    type: FeatureType = Field(description='`int`, `float`, `category` or `bool`.')
    nullable: bool = Field(False, description='Whether nulls are allowed (otherwise a not-null rule).')
    min: float | None = Field(None, description='Numeric lower bound (inclusive).')
    max: float | None = Field(None, description='Numeric upper bound (inclusive).')
    allowed: TextValues | None = Field(default=None, description="allowed categories")
    on_fail: Severity | Literal["quarantine"] = Field("quarantine", description=(
        'What a failing row does: `quarantine` (row set aside), `warn` (recorded) or `block` (batch '
        'refused).'))
    description: str = Field("", description='Free text.')
    model_input: bool = Field(True, description=(
        '`false`: the column is ingested, validated and kept in the features table but not given to the '
        'model (e.g. a sensitive attribute used only for fairness metrics).'))
    since: dt.date | None = Field(None, description=(
        'First partition date that carries the column (a feature added to a running pipeline). Earlier '
        'partitions may lack it: they are validated with the column NULL (a NULL is accepted there), so '
        're-runs and backfills of older dates work. docs/CHANGING_A_SPEC.md.'))
    until: dt.date | None = Field(None, description=(
        'Last partition date that carries the column (the source stopped sending it). Later partitions '
        'may lack it and get NULL (a model that uses it imputes it: retrain without it, then remove it). '
        'docs/CHANGING_A_SPEC.md.'))

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


class TargetSpec(SpecModel):
    name: Ident = Field(description=(
        'Label column: in the labels table, in `features.<name>_labels` and, when the file carries it, in'
        ' the raw batch. Never used as a feature.'))
    source: SourceName | None = Field(None, description=(
        'Header of the target in the landing file when it differs from `name` (e.g. `Churn`).'))
    task: Literal["binary_classification", "regression"] = Field("binary_classification", description=(
        '`binary_classification` or `regression`.'))
    label_delay_days: Annotated[int, Field(ge=0, le=365)] = Field(0, description=(
        'Days after the snapshot until the label is known. 0 with no `labels` section: the label comes '
        'from the landing file itself. > 0 needs a `labels` section.'))
    positive: TextValues | None = Field(None, description=(
        'Binary target: the value(s) meaning 1 (e.g. `"Yes"` — quote it). Without it a label must be 1/0,'
        ' true/false or yes/no.'))
    negative: TextValues | None = Field(None, description=(
        'Binary target: the value(s) meaning 0. Without it every other non-blank value is 0; with it, any'
        ' other value quarantines the row.'))

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
