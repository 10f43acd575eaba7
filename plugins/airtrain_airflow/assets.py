"""Airflow Assets between a pipeline's DAGs.

``publish_predictions`` of ``<name>_retrain`` is the producer of the asset ``airtrain.<name>.predictions``:
each successful publish emits one asset event whose ``extra`` names the published date and the model
version (:func:`predictions_event_extra`). ``<name>_monitor`` is scheduled on that asset (spec key
``schedule.monitor_on``), so a monitoring window is only checked once its predictions are published,
and an asset-triggered monitor run takes its window end from the event (it has no logical date).

Pure definitions: no I/O, safe at DAG parse time.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset
from airtrain.spec import PipelineSpec


def predictions_asset(spec: PipelineSpec) -> Asset:
    """The asset of a pipeline's published predictions (``<predictions_schema>.<name>``).

    The URI names the warehouse connection and the table; it uses an ``x-`` scheme because the host
    of the warehouse is only known at run time (a ``postgres://`` URI needs it at parse time).
    """
    schema, table = spec.table("predictions")
    return Asset(name=f"airtrain.{spec.name}.predictions",
                 uri=f"x-airtrain://{spec.warehouse.conn_id}/{schema}/{table}", group="airtrain")


def predictions_event_extra(spec: PipelineSpec, published: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The ``extra`` of a publish event: what the monitor needs to pick its window."""
    return {"pipeline": spec.name, "date": str(published["as_of"]), "model_version": int(published["version"]),
            "rows": int(published["rows"]), "table": published["table"], "run_id": run_id}


def monitor_schedule(spec: PipelineSpec) -> Any:
    """``<name>_monitor``'s schedule: the predictions asset, or the asset or the cron (``schedule.monitor``)."""
    asset = predictions_asset(spec)
    if spec.schedule.monitor_on == "predictions":
        return asset
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(spec.schedule.monitor, timezone=spec.schedule.timezone),
                               assets=asset)
