"""Alert-only drift (``monitoring.trigger.feature_drift: alert``, issue 24): the windows whose drift
signals are recorded and notified but never retrained on (decision ``drift_alert`` in
``drift_decisions``, ``details.alert``). The check decides whether an alert is due (once per
``cooldown_days``); the Airflow side sends it and marks it sent after (an effect first, its record after).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg2 import sql

from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def drift_alerts_due(wh: Warehouse, spec: PipelineSpec, window_ends: list[dt.date]) -> list[dict[str, Any]]:
    """The alert-only drift windows among ``window_ends`` whose alert is due and not sent yet."""
    if not window_ends:
        return []
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT window_start, window_end, model_version, reason, drift_share, report_id FROM {} "
            "WHERE pipeline = %s AND window_end = ANY(%s) AND decision = 'drift_alert' "
            "AND details->'alert'->>'due' = 'true' AND NOT (details->'alert' ? 'alerted') ORDER BY window_end").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, list(window_ends)))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def mark_drift_alerted(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> None:
    """The window's alert-only drift alert was sent (never again for this window)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "UPDATE {} SET details = jsonb_set(details, '{{alert,alerted}}', to_jsonb(now()::text)) "
            "WHERE pipeline = %s AND window_end = %s AND details ? 'alert'").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, window_end))


def last_due(wh: Warehouse, spec: PipelineSpec, window_end: dt.date) -> dt.date | None:
    """The newest alert-only window before ``window_end`` whose alert was due (the reminder's clock)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT max(window_end) FROM {} WHERE pipeline = %s AND window_end < %s AND decision = "
                            "'drift_alert' AND details->'alert'->>'due' = 'true'").format(
            ident(spec.warehouse.monitoring_schema, "drift_decisions")), (spec.name, window_end))
        return cur.fetchone()[0]
