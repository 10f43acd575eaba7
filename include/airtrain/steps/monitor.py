"""The monitor DAG's steps: which windows to check and checking them (drift, realized performance and
fairness), the canary decision of each published date, and the alerts that are due - returned, so the
Airflow side sends them and records afterwards that they were sent (an effect first, its record after).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airtrain.monitoring import canary, check, performance, windows
from airtrain.registry import rollouts
from airtrain.serving import publish
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.reports import ReportStore

__all__ = ["NoPublishedDateError", "aborted_canaries_due", "canary_check", "check_windows", "dates_from_events",
           "fairness_alerts_due", "is_published", "mark_canary_alerted", "mark_fairness_alerted",
           "mark_trigger_alerted", "record_trigger", "windows_to_check"]

NoPublishedDateError = windows.NoPublishedDateError
dates_from_events = windows.dates_from_events
is_published = publish.is_published


def windows_to_check(wh: Warehouse, spec: PipelineSpec, dates: list[dt.date], *, run_id: str) -> list[dt.date]:
    """The windows a monitor run checks, oldest first (:func:`airtrain.monitoring.windows.windows_to_check`)."""
    return windows.windows_to_check(wh, spec, dates, run_id=run_id)


def check_windows(wh: Warehouse, spec: PipelineSpec, window_ends: list[dt.date], *, run_id: str,
                  reports_root: Path | ReportStore) -> dict[str, Any]:
    """Check each window, oldest first; the decision that counts (:func:`airtrain.monitoring.check.check_windows`)."""
    return check.check_windows(wh, spec, window_ends, run_id=run_id, reports_root=reports_root)


def record_trigger(wh: Warehouse, spec: PipelineSpec, window_end: dt.date, *, run_id: str | None,
                   error: str | None = None) -> bool:
    """What the retrain trigger of a window really did; True when its alert is still due."""
    return windows.record_trigger(wh, spec, window_end, run_id=run_id, error=error)


def mark_trigger_alerted(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> None:
    windows.mark_alerted(wh, spec, window_end)


def fairness_alerts_due(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> list[dict[str, Any]]:
    return performance.fairness_alerts_due(wh, spec, window_end)


def mark_fairness_alerted(wh: Warehouse, spec: PipelineSpec, window_end: dt.date, attribute: str, metric: str
                          ) -> None:
    performance.mark_fairness_alerted(wh, spec, window_end, attribute, metric)


def canary_check(wh: Warehouse, spec: PipelineSpec, ends: list[dt.date], *, run_id: str) -> dict[str, Any]:
    """The canary decision of each date, oldest first; once one graduates or aborts the canary, the later
    dates find none running. Returns the one applied (else the newest) with every date's outcome."""
    checks = [canary.evaluate(wh, spec, end, run_id=run_id) for end in ends]
    out = dict(next((c for c in checks if c.get("applied")), checks[-1]))
    out["checks"] = [{"evaluated_on": e.isoformat(), "decision": c.get("decision"), "applied": c.get("applied")}
                     for e, c in zip(ends, checks, strict=True)]
    return out


def aborted_canaries_due(wh: Warehouse, spec: PipelineSpec) -> list[dict[str, Any]]:
    """Aborted canaries whose alert was not sent yet."""
    return rollouts.unalerted_aborts(wh, spec)


def mark_canary_alerted(wh: Warehouse, spec: PipelineSpec, rollout_id: int) -> None:
    rollouts.mark_alerted(wh, spec, rollout_id)
