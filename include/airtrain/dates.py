"""Which partition (calendar date) a run works on. Pure; no Airflow import.

Airflow 3 cron runs have ``data_interval_start == data_interval_end == logical_date``, and manual or
asset-triggered runs may have no ``logical_date`` at all (guide, trap 2). So the partition is decided
explicitly: an explicit ``date`` param wins; otherwise the day *before* the run's logical date, in
the pipeline's timezone (a daily batch for day D lands after midnight and is processed on D+1).
When neither exists we fail loudly instead of guessing.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from airtrain.errors import PermanentError


class PartitionUndefinedError(PermanentError, ValueError):
    """The run has neither a ``date`` param nor a logical date."""


def parse_date(value: str | dt.date, key: str = "date") -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"param '{key}' must be a date like 2026-11-21, got {value!r}") from None


def resolve_partition(param_date: str | dt.date | None, logical_date: dt.datetime | None, tz: str) -> dt.date:
    if param_date not in (None, ""):
        return parse_date(param_date)  # type: ignore[arg-type]
    if logical_date is None:
        raise PartitionUndefinedError(
            "this run has no logical date and no 'date' param, so the partition to process is "
            "undefined; trigger it again with a 'date' (YYYY-MM-DD) in the run parameters"
        )
    return logical_date.astimezone(ZoneInfo(tz)).date() - dt.timedelta(days=1)


def date_range(start: dt.date, end: dt.date, limit: int = 366) -> list[dt.date]:
    if end < start:
        raise ValueError(f"end_date {end} is before date {start}; swap them")
    n = (end - start).days + 1
    if n > limit:
        raise ValueError(f"a range of {n} days is more than the {limit} allowed in one run; split it")
    return [start + dt.timedelta(days=i) for i in range(n)]
