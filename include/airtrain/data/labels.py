"""Land one partition from the spec's source into ``raw.<name>_batches``, exactly as received.

* files source: ``<landing root>/<source.path>/<pattern with {date}>`` (CSV or Parquet). The root is
  the project folder (a :class:`~pathlib.Path`) or any pathlib-like object-storage path (the Airflow
  layer passes ``ObjectStoragePath($AIRTRAIN_LANDING_URL)``: ``file://``, ``s3://``, ...). Every value
  is kept as text — '0042' stays '0042' — so that typing problems are validation's to find and
  quarantine, and the raw table shows what arrived. Columns are matched by their source name
  (``source:`` in the spec, else the warehouse name) and stored under the warehouse name. Unknown
  columns go to ``_extra`` (jsonb); expected columns that are absent stay NULL and are reported
  (the target only when labels come from the batch; a missing date column is filled with the
  partition date).
* postgres source: ``INSERT … SELECT col::text …`` inside the server; no data passes through Python.

A re-run of a date replaces that date's rows in ONE transaction (delete + bulk COPY), under an
advisory lock, so readers see the old rows or the new ones, never none. Landing files are never
moved or deleted: the bytes as received stay where they landed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def load_labels(wh: Warehouse, spec: PipelineSpec, as_of: dt.date) -> int:
    """Upsert labels known on ``as_of`` from the spec's labels table (server-side, idempotent).

    With ``target.positive`` the table holds the values as received (text such as 'Yes'/'No'); they
    are mapped to 1/0 here, and rows whose value maps to nothing are skipped (counted in the log).
    """
    if spec.labels is None:
        return 0
    src = spec.labels
    ls, lt = spec.table("labels")
    key, date, target = spec.entity_key, spec.date_column, spec.target.name
    t = spec.target
    params: dict[str, Any] = {"as_of": as_of}
    if t.positive:
        params.update(pos=list(t.positive), neg=list(t.negative) if t.negative else None)
        value = sql.SQL("CASE WHEN btrim({t}::text) = ANY(%(pos)s) THEN 1 WHEN %(neg)s::text[] IS NULL AND "
                        "btrim({t}::text) <> '' THEN 0 WHEN btrim({t}::text) = ANY(%(neg)s::text[]) THEN 0 END"
                        ).format(t=ident(target))
    else:
        value = ident(target)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {dst} ({k}, {d}, {t}, label_available_on) SELECT * FROM (SELECT {k}, {d}, {v} AS v, {a} "
            "FROM {src} WHERE {a} <= %(as_of)s) s WHERE v IS NOT NULL ON CONFLICT ({k}, {d}) DO UPDATE SET "
            "{t} = EXCLUDED.{t}, label_available_on = EXCLUDED.label_available_on, _loaded_at = now() "
            "WHERE ({dst}.{t}, {dst}.label_available_on) IS DISTINCT FROM (EXCLUDED.{t}, EXCLUDED.label_available_on)"
        ).format(dst=ident(ls, lt), src=ident(src.schema_, src.table), k=ident(key), d=ident(date), t=ident(target),
                 v=value, a=ident(src.available_column)), params)
        return cur.rowcount


def store_batch_labels(cur: Any, spec: PipelineSpec, d: Any, valid: Any) -> int:
    """Upsert the labels the batch carried (valid rows with a target value) into
    ``features.<name>_labels``, known on the partition date, inside the caller's transaction.

    When labels come only from batches (no ``labels`` section) the date's earlier batch labels are
    replaced first, so a re-run with a corrected file never keeps a stale label."""
    ls, lt = spec.table("labels")
    key, date, target = spec.entity_key, spec.date_column, spec.target.name
    if spec.labels_from_batch:
        cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(ident(ls, lt), ident(date)), (d,))
    if target not in valid.columns:
        return 0
    labeled = valid.loc[valid[target].notna(), [key, date, target]]
    if labeled.empty:
        return 0
    rows = [(k, dd, float(v) if spec.target.task == "regression" else int(v), d)
            for k, dd, v in labeled.itertuples(index=False, name=None)]
    execute_values(cur, sql.SQL(
        "INSERT INTO {t} ({k}, {d}, {y}, label_available_on) VALUES %s ON CONFLICT ({k}, {d}) DO UPDATE SET "
        "{y} = EXCLUDED.{y}, label_available_on = EXCLUDED.label_available_on, _loaded_at = now()").format(
        t=ident(ls, lt), k=ident(key), d=ident(date), y=ident(target)).as_string(cur), rows, page_size=5000)
    return len(rows)
