"""Spec sections ``schedule`` (Airflow scheduling of the pipeline's DAGs) and ``alerts``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from airtrain.spec.names import SpecModel

ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]


class AlertsSpec(SpecModel):
    slack_conn_id: ConnId | None = Field(None, description='Airflow Slack webhook connection id.')
    smtp_to: list[Annotated[str, Field(pattern=r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")]] = Field(
        default_factory=list, description=(
        'E-mail recipients (Airflow SMTP connection).'))
    webhook_conn_id: ConnId | None = Field(None, description=(
        'Airflow HTTP connection for a generic webhook.'))


class ScheduleSpec(SpecModel):
    start_paused: bool = Field(True, description=(
        'The DAGs appear paused the first time (land data, then unpause them in the UI or with `airflow '
        'dags unpause`). Has no effect on DAGs that exist already.'))
    retrain: str | None = Field("0 3 * * *", description=(
        'Cron or @preset of the retrain DAG. `null`: no scheduled runs (a history-only pipeline: manual '
        "runs with `date`/`end_date` only; Airflow's backfill needs a cron schedule - use `last_date` for"
        ' that instead).'))
    monitor: str = Field("0 5 * * *", description=(
        "Cron or @preset of the monitor DAG's time condition (only with `monitor_on: "
        'predictions_or_cron`).'))
    start_date: dt.date = Field(dt.date(2026, 1, 1), description='Fixed start date (catchup is off).')
    first_date: dt.date | None = Field(None, description=(
        'The first partition date with data. No scheduled run processes an earlier day (the DAGs start '
        'the day after it), and any run for earlier days skips them with the reason (`check_params` logs '
        'it; `route` is skipped with it when nothing is left).'))
    last_date: dt.date | None = Field(None, description=(
        'The last partition date with data (a pipeline on historical data). No scheduled run processes a '
        'later day (the DAGs end with the run for it), so unpausing creates no run that waits for a file '
        'that never comes; backfills within the range work. Runs for later days skip them with the '
        'reason.'))
    timezone: str = Field("UTC", description='IANA timezone of the schedule and of partition dates.')
    retries: Annotated[int, Field(ge=2, le=10)] = Field(2, description='Retries per task (at least 2).')
    retry_delay_minutes: Annotated[float, Field(gt=0, le=1440)] = Field(2.0, description=(
        'First retry delay; doubles on each retry (exponential backoff).'))
    max_active_runs: Annotated[int, Field(ge=1, le=64)] = Field(1, description=(
        'Concurrent runs per DAG (writes are also guarded by advisory locks).'))
    monitor_on: Literal["predictions", "predictions_or_cron"] = Field("predictions", description=(
        '`predictions`: the monitor DAG runs when the retrain DAG publishes predictions (the Airflow '
        'Asset `airtrain.<name>.predictions`) and checks the published date. `predictions_or_cron`: also '
        'on `schedule.monitor`; such a time run checks the day before its logical date only when that '
        "day's predictions are published, and skips otherwise."))

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
