"""Which partition a run processes (Airflow 3 date semantics made explicit)."""

from __future__ import annotations

import datetime as dt

import pytest
from airtrain.dates import PartitionUndefinedError, date_range, resolve_partition

UTC = dt.UTC


@pytest.mark.parametrize("param, logical, tz, want", [
    pytest.param("2026-03-05", None, "UTC", dt.date(2026, 3, 5), id="param-wins-without-logical-date"),
    pytest.param("2026-03-05", dt.datetime(2026, 6, 1, 3, tzinfo=UTC), "UTC", dt.date(2026, 3, 5), id="param-wins"),
    pytest.param(None, dt.datetime(2026, 6, 1, 3, tzinfo=UTC), "UTC", dt.date(2026, 5, 31), id="day-before-logical"),
    pytest.param(None, dt.datetime(2026, 6, 1, 3, tzinfo=UTC), "America/Los_Angeles", dt.date(2026, 5, 30),
                 id="in-the-pipeline-timezone"),
])
def test_resolve_partition(param, logical, tz, want):
    assert resolve_partition(param, logical, tz) == want


def test_undefined_partition_fails_loudly():
    with pytest.raises(PartitionUndefinedError, match="trigger it again with a 'date'"):
        resolve_partition(None, None, "UTC")
    with pytest.raises(ValueError, match="must be a date like"):
        resolve_partition("yesterday", None, "UTC")


def test_date_range():
    assert len(date_range(dt.date(2026, 1, 1), dt.date(2026, 1, 31))) == 31
    with pytest.raises(ValueError, match="before"):
        date_range(dt.date(2026, 2, 1), dt.date(2026, 1, 1))
    with pytest.raises(ValueError, match="at most 366|more than the 366"):
        date_range(dt.date(2020, 1, 1), dt.date(2026, 1, 1))
