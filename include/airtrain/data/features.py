"""Reading validated features: typed frames (:func:`coerce_features`), the labeled rows known on a date
(point in time: :func:`labeled_frame`), and the dates and row counts of the features table.
"""

from __future__ import annotations

import datetime as dt

from psycopg2 import sql

from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, read_frame


def coerce_features(df, spec: PipelineSpec):
    """Give the feature columns of ``df`` their spec dtypes (nulls become NaN/None)."""
    import pandas as pd

    out = df.copy()
    for f in spec.features:
        if f.name not in out:
            continue
        if f.type in ("int", "float"):
            out[f.name] = pd.to_numeric(out[f.name], errors="coerce").astype("float64")
        elif f.type == "bool":
            out[f.name] = out[f.name].map(lambda v: None if v is None else float(bool(v))).astype("float64")
        else:
            out[f.name] = out[f.name].astype("object").where(out[f.name].notna(), None)
    if spec.date_column in out:
        out[spec.date_column] = pd.to_datetime(out[spec.date_column]).dt.date
    return out


def sample_per_date(spec: PipelineSpec) -> int | None:
    """Rows each date of the training window gives at most (``training.sample_rows`` / ``window_days``)."""
    n = spec.training.sample_rows
    return None if n is None else -(-n // spec.training.window_days)


def labeled_frame(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, start: dt.date | None = None,
                  end: dt.date | None = None, per_date: int | None = None):
    """Validated features of dates up to ``as_of`` joined to the labels known on ``as_of`` (their
    ``label_available_on``), optionally within [start, end]: what was known on that date, whatever
    later days the warehouse holds. ``per_date``: at most that many rows of each date, the first by
    ``md5(key|date)`` (a deterministic sample chosen in the warehouse; only the sample is read)."""
    fs, ft = spec.table("features")
    ls, lt = spec.table("labels")
    key, date, target = spec.entity_key, spec.date_column, spec.target.name
    cols = sql.SQL(", ").join([sql.SQL("f.{}").format(ident(c)) for c in [key, date, *spec.feature_names]]
                              + [sql.SQL("l.{}").format(ident(target))])
    cond = [sql.SQL("l.label_available_on <= %(as_of)s"), sql.SQL("f.{} <= %(as_of)s").format(ident(date))]
    if start is not None:
        cond.append(sql.SQL("f.{} >= %(start)s").format(ident(date)))
    if end is not None:
        cond.append(sql.SQL("f.{} <= %(end)s").format(ident(date)))
    query = sql.SQL("SELECT {cols} FROM {f} f JOIN {l} l ON l.{k} = f.{k} AND l.{d} = f.{d} WHERE {cond} "
                    "ORDER BY f.{d}, f.{k}").format(
        cols=cols, f=ident(fs, ft), l=ident(ls, lt), k=ident(key), d=ident(date),
        cond=sql.SQL(" AND ").join(cond))
    if per_date is not None:
        # per date a top-N by md5 (a bounded heap in the server), not a sort of the whole window
        names = sql.SQL(", ").join(ident(c) for c in [key, date, *spec.feature_names, target])
        dates = (sql.SQL("SELECT generate_series(%(start)s::date, least(coalesce(%(end)s, %(as_of)s), %(as_of)s)::date, "
                         "interval '1 day')::date AS _d") if start is not None else
                 sql.SQL("SELECT DISTINCT f.{d} AS _d FROM {f} f WHERE f.{d} <= least(coalesce(%(end)s, %(as_of)s), "
                         "%(as_of)s)").format(d=ident(date), f=ident(fs, ft)))
        query = sql.SQL(
            "SELECT {names} FROM ({dates}) dd CROSS JOIN LATERAL (SELECT {cols} FROM {f} f JOIN {l} l ON l.{k} = f.{k} "
            "AND l.{d} = f.{d} WHERE f.{d} = dd._d AND {cond} ORDER BY md5(f.{k}::text || '|' || f.{d}::text), f.{k} "
            "LIMIT %(per_date)s) s ORDER BY {d}, {k}").format(
            names=names, dates=dates, cols=cols, f=ident(fs, ft), l=ident(ls, lt), k=ident(key), d=ident(date),
            cond=sql.SQL(" AND ").join(cond))
    df = read_frame(wh, query, {"as_of": as_of, "start": start, "end": end, "per_date": per_date})
    df = coerce_features(df, spec)
    if len(df):
        df[target] = df[target].astype("float64" if spec.target.task == "regression" else "int64")
    return df


def last_labeled_date(wh: Warehouse, spec: PipelineSpec, as_of: dt.date) -> dt.date | None:
    fs, ft = spec.table("features")
    ls, lt = spec.table("labels")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT max(f.{d}) FROM {f} f JOIN {l} l ON l.{k} = f.{k} AND l.{d} = f.{d} "
                            "WHERE l.label_available_on <= %s AND f.{d} <= %s").format(
            d=ident(spec.date_column), k=ident(spec.entity_key), f=ident(fs, ft), l=ident(ls, lt)), (as_of, as_of))
        row = cur.fetchone()
    return row[0] if row and row[0] else None


def newest_validated_date(wh: Warehouse, spec: PipelineSpec) -> dt.date | None:
    """The newest date of the features table (None when it is empty)."""
    schema, table = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT max({}) FROM {}").format(ident(spec.date_column), ident(schema, table)))
        row = cur.fetchone()
    return row[0] if row else None


def date_rows(wh: Warehouse, spec: PipelineSpec, as_of: dt.date) -> int:
    """The feature rows of one date (what the shard count follows)."""
    schema, table = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            ident(schema, table), ident(spec.date_column)), (as_of,))
        return int(cur.fetchone()[0])
