"""Evaluation records: the metrics of the challenger and of the champion on the same rows (overall and
per slice, ``registry.evaluations``) with their permutation importance (``registry.feature_importance``)
and group fairness (``registry.fairness``); a re-run of the run replaces its rows, in one transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def store_explain_and_fairness(cur: Any, spec: PipelineSpec, run_id: str, window: tuple[dt.date, dt.date],
                               audit: dict[str, Any]) -> None:
    """Replace the run's rows in registry.feature_importance and registry.fairness (caller's transaction)."""
    reg = spec.warehouse.registry_schema
    for table in ("feature_importance", "fairness"):
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND run_id = %s").format(ident(reg, table)),
                    (spec.name, run_id))
    imp_rows = [(spec.name, run_id, v, role, window[0], window[1], i.feature, i.mean, i.std, n,
                 spec.evaluation.primary_metric, spec.explain.importance_repeats)
                for role, (v, n, imps) in audit["importance_rows"].items() for i in imps]
    if imp_rows:
        execute_values(cur, sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, role, holdout_start, holdout_end, feature, importance_mean, "
            "importance_std, n_rows, scoring, n_repeats) VALUES %s").format(ident(reg, "feature_importance")
                                                                            ).as_string(cur), imp_rows)
    fair_rows = [(spec.name, run_id, v, role, window[0], window[1], r["attribute"], r["group_value"], r["metric"],
                  r["value"], r["n_rows"]) for role, (v, rows) in audit["fairness_rows"].items() for r in rows]
    if fair_rows:
        execute_values(cur, sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, role, holdout_start, holdout_end, attribute, group_value, "
            "metric, value, n_rows) VALUES %s").format(ident(reg, "fairness")).as_string(cur), fair_rows)


def store(wh: Warehouse, spec: PipelineSpec, run_id: str, window: tuple[dt.date, dt.date],
          metrics: dict[str, tuple[int, list[dict[str, Any]]]], audit: dict[str, Any]) -> None:
    """Replace the run's evaluation rows: ``metrics`` is {role: (version, rows of metric, slice_column,
    slice_value, value, n_rows)}, ``audit`` the importance and fairness rows (one transaction)."""
    c_start, c_end = window
    with wh.connect() as conn, conn.cursor() as cur:
        store_explain_and_fairness(cur, spec, run_id, window, audit)
        table = ident(spec.warehouse.registry_schema, "evaluations")
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND run_id = %s").format(table),
                    (spec.name, run_id))
        rows_out = []
        for role, (v, rows) in metrics.items():
            for r in rows:
                rows_out.append((spec.name, run_id, v, role, c_start, c_end, r["metric"], r["slice_column"],
                                 str(r["slice_value"]), float(r["value"]), int(r["n_rows"])))
        execute_values(cur, sql.SQL(
            "INSERT INTO {} (pipeline, run_id, version, role, holdout_start, holdout_end, metric, slice_column, "
            "slice_value, value, n_rows) VALUES %s").format(table).as_string(cur), rows_out)
