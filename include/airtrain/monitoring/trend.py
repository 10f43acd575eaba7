"""A pipeline's monitoring trend for the UI's chart (issue 24): per window the drift share, the decision,
the champion's estimated primary metric with its band and the realized one (once its labels were due),
and the events to mark on the time axis - triggered retrains, promotions, rollbacks, canaries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg2 import sql

from airtrain.registry import champions, rollouts
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def trend(wh: Warehouse, spec: PipelineSpec, limit: int = 120) -> dict[str, Any]:
    """The newest ``limit`` windows (oldest first) and the events between their first and last day."""
    mon = spec.warehouse.monitoring_schema
    metric = spec.evaluation.primary_metric
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT d.window_end, d.decision, d.drift_share, d.model_version, d.triggered_run_id IS NOT NULL, "
            "e.estimate, e.band_low, e.band_high, e.realized, e.baseline FROM {d} d LEFT JOIN {e} e ON "
            "e.pipeline = d.pipeline AND e.window_end = d.window_end AND e.role = 'champion' AND e.metric = %s "
            "AND e.model_version = d.model_version WHERE d.pipeline = %s ORDER BY d.window_end DESC LIMIT %s").format(
            d=ident(mon, "drift_decisions"), e=ident(mon, "performance_estimates")), (metric, spec.name, limit))
        cols = ["window_end", "decision", "drift_share", "model_version", "triggered", "estimate", "band_low",
                "band_high", "realized", "baseline"]
        windows = [dict(zip(cols, r, strict=True)) for r in reversed(cur.fetchall())]
    events: list[dict[str, Any]] = []
    if windows:
        first, last = windows[0]["window_end"], windows[-1]["window_end"]
        events += [{"date": w["window_end"], "kind": "retrain", "label": f"retrain triggered ({w['window_end']})"}
                   for w in windows if w["triggered"]]
        for p in champions.promotion_log(wh, spec):
            day = p.get("effective_on") or (p["created_at"].date() if p.get("created_at") else None)
            if day is None or not first <= day <= last:
                continue
            kind = "rollback" if p["action"] == "rollback" else "promotion"
            events.append({"date": day, "kind": kind, "label": f"{p['action']} v{p['from_version'] or '-'} → "
                                                                f"v{p['to_version']} ({p['actor']})"})
        for r in rollouts.list_rollouts(wh, spec, limit=50):
            for day, what in ((r.get("started_on"), "started"), (r.get("decided_on"), r.get("status"))):
                if isinstance(day, dt.datetime):
                    day = day.date()
                if day is not None and first <= day <= last:
                    events.append({"date": day, "kind": "canary",
                                   "label": f"canary v{r['candidate_version']} {what}"})
    return {"metric": metric, "windows": windows, "events": sorted(events, key=lambda e: (e["date"], e["kind"]))}
