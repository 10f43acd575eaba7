"""A validated partition into the warehouse, in ONE transaction keyed by the date: the valid rows into the
features table, the failing rows into the quarantine, the labels the batch carried, and the record
(``monitoring.validation_runs``); a blocked re-run of a date that passed keeps the validation in force.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain.data.labels import store_batch_labels
from airtrain.faults import failpoint
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, xact_lock


def passed_before(wh: Warehouse, spec: PipelineSpec, d: dt.date) -> bool:
    """Whether the date has a validation in force that passed (its rows are in the features table)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT NOT blocked FROM {} WHERE pipeline = %s AND partition_date = %s").format(
            ident(spec.warehouse.monitoring_schema, "validation_runs")), (spec.name, d))
        row = cur.fetchone()
    return bool(row and row[0])


def store_validation(wh: Warehouse, spec: PipelineSpec, d: dt.date, run_id: str, outcome: Any,
                     report_path: str) -> dict[str, Any] | None:
    """Write one partition's validation outcome in ONE transaction (replacing earlier runs).

    A blocked batch of a date whose validation in force passed (a re-run with a bad file, or with
    rules its rows no longer meet) changes none of that state - the record, the rows in the
    features table, the quarantine: the blocked attempt is recorded beside it
    (``validation_runs.blocked_attempt``, cleared by the next pass) and the record in force is
    returned ({run_id, rows_valid, rows_quarantined}). Any other blocked batch writes its quarantine
    rows and its (blocked) result, and nothing to the features table.
    """
    fs, ft = spec.table("features")
    qs, qt = spec.table("quarantine")
    runs = ident(spec.warehouse.monitoring_schema, "validation_runs")
    cols = [spec.entity_key, spec.date_column, *spec.feature_names]
    kept = None
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "partition", spec.name, d.isoformat())
        if outcome.blocked:
            cur.execute(sql.SQL("SELECT run_id, rows_valid, rows_quarantined FROM {} WHERE pipeline = %s AND "
                                "partition_date = %s AND NOT blocked").format(runs), (spec.name, d))
            row = cur.fetchone()
            if row is not None:
                attempt = {"run_id": run_id, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "rows_total": outcome.rows_total, "rows_valid": outcome.rows_valid,
                           "rows_quarantined": outcome.rows_quarantined, "block_reasons": outcome.block_reasons,
                           "report_path": report_path}
                cur.execute(sql.SQL("UPDATE {} SET blocked_attempt = %s WHERE pipeline = %s AND partition_date = %s"
                                    ).format(runs), (json.dumps(attempt, default=str), spec.name, d))
                kept = {"run_id": row[0], "rows_valid": row[1], "rows_quarantined": row[2]}
        if kept is None:  # the outcome becomes the date's validation in force
            cur.execute(sql.SQL("DELETE FROM {} WHERE _partition_date = %s").format(ident(qs, qt)), (d,))
            q = outcome.quarantine
            if len(q):
                rows = [
                    (d, int(r["_row_number"]), run_id, list(r["reasons"]), json.dumps(r["row_data"], default=str))
                    for r in q.to_dict("records")
                ]
                execute_values(
                    cur,
                    sql.SQL("INSERT INTO {} (_partition_date, _row_number, _run_id, reasons, row_data) VALUES %s"
                            ).format(ident(qs, qt)).as_string(cur),
                    rows,
                )
            if not outcome.blocked:
                cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(ident(fs, ft), ident(spec.date_column)),
                            (d,))
                valid = outcome.valid.copy()
                valid["_run_id"] = run_id
                _copy_frame(cur, ident(fs, ft), valid, [*cols, "_run_id"])
                store_batch_labels(cur, spec, d, outcome.valid)
            record_validation(cur, spec, d, run_id, outcome, report_path)
        failpoint("validate.before_commit")
    failpoint("validate.after_commit")
    return kept


def _copy_frame(cur: Any, table: sql.Composable, df, columns: list[str]) -> None:
    """COPY ``df[columns]`` into ``table`` (bulk, inside the caller's transaction)."""
    if df.empty:
        return
    buf = io.StringIO()
    df[columns].to_csv(buf, index=False, header=False, na_rep="")
    buf.seek(0)
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            table, sql.SQL(", ").join(ident(c) for c in columns)).as_string(cur),
        buf,
    )


def list_validations(wh: Warehouse, spec: PipelineSpec, limit: int = 200) -> list[dict[str, Any]]:
    """Newest validated partitions first, with their counts and report (for the UI page)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT partition_date, run_id, rows_total, rows_valid, rows_quarantined, blocked, report_path, "
            "created_at, blocked_attempt FROM {} WHERE pipeline = %s ORDER BY partition_date DESC LIMIT %s"
        ).format(ident(spec.warehouse.monitoring_schema, "validation_runs")), (spec.name, limit))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def record_validation(cur: Any, spec: PipelineSpec, d: dt.date, run_id: str, outcome: Any, report_path: str) -> None:
    """``outcome`` (in memory or in the warehouse) becomes the date's validation in force, in the
    caller's transaction (a blocked attempt after a passed one is recorded apart, by the caller)."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, partition_date, run_id, rows_total, rows_valid, rows_quarantined, "
            "blocked, results, report_path, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (pipeline, partition_date) DO UPDATE SET run_id = EXCLUDED.run_id, "
            "rows_total = EXCLUDED.rows_total, rows_valid = EXCLUDED.rows_valid, "
            "rows_quarantined = EXCLUDED.rows_quarantined, blocked = EXCLUDED.blocked, "
            "results = EXCLUDED.results, report_path = EXCLUDED.report_path, blocked_attempt = NULL, "
            "created_at = now()"
        ).format(ident(spec.warehouse.monitoring_schema, "validation_runs")),
        (spec.name, d, run_id, outcome.rows_total, outcome.rows_valid, outcome.rows_quarantined,
         outcome.blocked, json.dumps({"results": outcome.results, "block_reasons": outcome.block_reasons,
                                      "warnings": outcome.warnings}, default=str), report_path),
    )
