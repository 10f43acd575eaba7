"""The data a drift check compares: the window's validated rows (a deterministic sample) and the
champion's reference - a deterministic sample of the rows it was trained and evaluated on, scored by
it, stored once per version - filtered by the current row rules, so a tightened rule is not read as
drift (the rule changes since the version was trained are named).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from airtrain.data.features import coerce_features
from airtrain.model.evaluation import predict_scores
from airtrain.monitoring.drift import PREDICTION
from airtrain.registry import versions
from airtrain.spec import FeatureSpec, PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, read_frame, xact_lock

log = logging.getLogger(__name__)


def window_bounds(spec: PipelineSpec, window_end: dt.date) -> tuple[dt.date, dt.date]:
    return window_end - dt.timedelta(days=spec.monitoring.window_days - 1), window_end


def _sample_query(spec: PipelineSpec, table: sql.Composable, extra_cols: list[str], where: sql.Composable
                  ) -> sql.Composable:
    key, date = spec.entity_key, spec.date_column
    cols = sql.SQL(", ").join(ident(c) for c in [key, date, *spec.feature_names, *extra_cols])
    return sql.SQL("SELECT {cols} FROM {t} WHERE {where} ORDER BY md5({k}::text || '|' || {d}::text), {k}, {d} "
                   "LIMIT %(limit)s").format(cols=cols, t=table, where=where, k=ident(key), d=ident(date))


def load_window(wh: Warehouse, spec: PipelineSpec, start: dt.date, end: dt.date):
    """(deterministic sample of the window's validated rows, total rows in the window)."""
    fs, ft = spec.table("features")
    d = ident(spec.date_column)
    where = sql.SQL("{} BETWEEN %(start)s AND %(end)s").format(d)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident(fs, ft), where),
                    {"start": start, "end": end})
        total = int(cur.fetchone()[0])
    df = read_frame(wh, _sample_query(spec, ident(fs, ft), [], where),
                    {"start": start, "end": end, "limit": spec.monitoring.sample_rows})
    return coerce_features(df, spec), total


def ensure_reference(wh: Warehouse, spec: PipelineSpec, version: int, model: Any = None) -> int:
    """Store the reference sample of ``version`` once (its train + holdout window, scored by it).

    Returns the number of reference rows. Idempotent and safe under concurrency: the first writer
    holds a transaction lock per (pipeline, version); later callers find the rows and return.
    """
    ms, mt = spec.table("reference")
    ref = ident(ms, mt)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE model_version = %s").format(ref), (version,))
        have = int(cur.fetchone()[0])
    if have:
        return have
    mv = versions.get_version(wh, spec, version)
    window = mv.lineage.get("window") or {}
    try:
        start = dt.date.fromisoformat(str(window["train_start"]))
        end = dt.date.fromisoformat(str(window["holdout_end"]))
    except (KeyError, ValueError):
        raise versions.RegistryError(
            f"{spec.name} version {version} has no training window in its lineage; cannot build its drift "
            "reference (was it registered by this project?)") from None
    fs, ft = spec.table("features")
    where = sql.SQL("{} BETWEEN %(start)s AND %(end)s").format(ident(spec.date_column))
    df = read_frame(wh, _sample_query(spec, ident(fs, ft), [], where),
                    {"start": start, "end": end, "limit": spec.monitoring.sample_rows})
    if df.empty:
        raise versions.RegistryError(
            f"{spec.name}: no validated rows left in {start}..{end}, the window version {version} was trained "
            "on; its drift reference cannot be built")
    model = model if model is not None else versions.load_artifact(wh, spec, version)
    scores = predict_scores(model, coerce_features(df, spec), spec)
    cols = [spec.entity_key, spec.date_column, *spec.feature_names]
    rows = [(version, *(None if _isnull(v) else v for v in rec), float(s))
            for rec, s in zip(df[cols].itertuples(index=False, name=None), scores, strict=True)]
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "reference", spec.name, str(version))
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE model_version = %s").format(ref), (version,))
        have = int(cur.fetchone()[0])
        if have:
            return have
        execute_values(cur, sql.SQL("INSERT INTO {} (model_version, {}, prediction) VALUES %s").format(
            ref, sql.SQL(", ").join(ident(c) for c in cols)).as_string(cur), rows, page_size=5000)
    log.info("%s: stored a drift reference of %s rows for version %s (%s..%s)", spec.name, len(rows), version,
             start, end)
    return len(rows)


def _isnull(v: Any) -> bool:
    try:
        return v is None or v != v  # NaN
    except (TypeError, ValueError):
        return False


def load_reference(wh: Warehouse, spec: PipelineSpec, version: int):
    ms, mt = spec.table("reference")
    cols = sql.SQL(", ").join(ident(c) for c in [spec.entity_key, spec.date_column, *spec.feature_names, PREDICTION])
    df = read_frame(wh, sql.SQL("SELECT {} FROM {} WHERE model_version = %s ORDER BY {}, {}").format(
        cols, ident(ms, mt), ident(spec.entity_key), ident(spec.date_column)), (version,))
    return coerce_features(df, spec)


def reference_under_current_rules(wh: Warehouse, spec: PipelineSpec, version: int, reference):
    """(the reference rows the current row rules accept, rows excluded per feature, the rule changes
    since ``version`` was trained - from the spec stored with it)."""
    filtered, excluded = under_current_rules(reference, spec)
    changes = rule_changes(versions.version_spec(wh, spec, version), spec)
    if excluded:
        log.info("%s: drift reference of v%s filtered by the current rules: %s rows excluded (%s)", spec.name,
                 version, len(reference) - len(filtered), excluded)
    return filtered, excluded, changes


def _rule_mask(df: Any, f: FeatureSpec, dates: Any) -> Any:
    """Rows of ``df`` that the feature's current row rules would reject."""
    import pandas as pd

    col = df[f.name]
    bad = pd.Series(False, index=df.index)
    active = dates.map(f.active_on) if (f.since or f.until) else pd.Series(True, index=df.index)
    if not f.nullable:
        bad |= col.isna() & active
    if f.min is not None or f.max is not None:
        num = pd.to_numeric(col, errors="coerce")
        if f.min is not None:
            bad |= num.notna() & (num < f.min)
        if f.max is not None:
            bad |= num.notna() & (num > f.max)
    if f.allowed:
        bad |= col.notna() & ~col.astype("object").isin(list(f.allowed))
    return bad


def under_current_rules(reference: Any, spec: PipelineSpec) -> tuple[Any, dict[str, int]]:
    """The reference rows the current spec's row rules accept (not-null, min/max, allowed), and how
    many each feature's rules excluded. The reference was validated under the rules of its day: a
    tightened rule would otherwise compare a filtered window with an unfiltered reference. Rules with
    ``on_fail: warn`` keep their failing rows in the features table (and in every window), so they
    filter nothing here."""
    import pandas as pd

    if reference.empty:
        return reference, {}
    dates = pd.to_datetime(reference[spec.date_column]).dt.date
    bad = pd.Series(False, index=reference.index)
    excluded: dict[str, int] = {}
    for f in spec.features:
        if f.name not in reference.columns or f.on_fail == "warn":
            continue
        mask = _rule_mask(reference, f, dates)
        if int(mask.sum()):
            excluded[f.name] = int(mask.sum())
        bad |= mask
    return reference.loc[~bad].reset_index(drop=True), excluded


RULE_KEYS = ("type", "nullable", "min", "max", "allowed", "since", "until", "model_input")


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def rule_changes(old: dict[str, Any] | None, spec: PipelineSpec) -> dict[str, list[str]]:
    """{feature: ["max 500 -> 200", ...]} between the spec a version was trained under (``old``, the
    stored spec as a mapping) and ``spec``; a feature added or removed since is listed too."""
    if not old:
        return {}
    before: dict[str, FeatureSpec] = {}
    for item in old.get("features") or []:
        try:
            f = FeatureSpec.model_validate(item)
        except ValueError:
            continue  # written by another airtrain version: not comparable
        before[f.name] = f
    out: dict[str, list[str]] = {}
    for f in spec.features:
        b = before.get(f.name)
        if b is None:
            out[f.name] = ["added to the spec"]
            continue
        diffs = []
        for k in RULE_KEYS:
            x, y = getattr(b, k), getattr(f, k)
            if x != y:
                diffs.append(f"{k} {_num(x) if x is not None else 'unset'} -> {_num(y) if y is not None else 'unset'}")
        if diffs:
            out[f.name] = diffs
    for name in before:
        if name not in spec.feature_names:
            out[name] = ["removed from the spec"]
    return out
