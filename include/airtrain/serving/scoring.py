"""Batch scoring: stream features out, predictions in, then swap the partition atomically.

Prediction tables (``predictions.<name>`` and ``predictions.<name>_shadow``) are partitioned by
RANGE (as_of_date, model_version): one partition per scored date and model version. Writing a date:

1. :func:`begin` creates an empty *stage* table shaped like the parent (not attached: readers
   cannot see it), checks that the model exists and the features table has the spec's columns.
2. :func:`score_shard` (one call per shard; shards run in parallel as mapped Airflow tasks)
   streams the shard's feature rows out by Arrow record batches (ADBC), scores each batch and
   streams the predictions into the stage table with ADBC's binary COPY. Memory is bounded by
   ``batch_rows``, never by the partition size.
3. :func:`publish` checks the row count, adds the primary key and a CHECK constraint matching the
   partition bounds (so ATTACH does not rescan), and in ONE transaction under an advisory lock
   detaches and drops the old partition (if any) and attaches the stage table in its place.
   Readers see the old or the new partition, never a half-written or empty one; GRANTs and views
   are on the parent, so they survive.

A failure before publish leaves the published predictions untouched (the stage table is dropped
by :func:`abort` or by the next :func:`begin` of the same run). Stage tables are named per (date,
version, run), so concurrent runs of one date never share one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from psycopg2 import sql

from airtrain.data.features import date_rows
from airtrain.data.tables import feature_sql_type
from airtrain.faults import failpoint
from airtrain.model import explain
from airtrain.model.evaluation import predict_scores
from airtrain.registry import champions, versions
from airtrain.serving.publish import publish
from airtrain.serving.target import NoModelError, ScoringError, ScoringTarget, quoted, target_for
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident

log = logging.getLogger(__name__)


def resolve_version(wh: Warehouse, spec: PipelineSpec, model: str | int | None, as_of: dt.date | None = None
                    ) -> int:
    """'champion' → the champion (with ``as_of``: the champion *for that date*,
    :func:`airtrain.registry.champions.champion_as_of` - a re-run or backfill of an old date is scored by the
    model that was live for it); 'challenger' → newest non-champion version; or a version number.
    ``None`` or ``""`` (e.g. the run trained no challenger) is :class:`NoModelError`."""
    if model is None or (isinstance(model, str) and not model.strip()):
        raise NoModelError(f"{spec.name}: no model version given (this run trained no challenger)")
    champion = champions.champion_version(wh, spec)
    if model == "champion":
        if champion is None:
            raise NoModelError(
                f"{spec.name} has no champion model yet, so there is nothing to score with; run "
                f"{spec.retrain_dag_id} until a model passes the promotion gate (or roll back to a version)"
            )
        if as_of is None:
            return champion
        for_date = champions.champion_as_of(wh, spec, as_of)
        if for_date is None:
            raise NoModelError(
                f"{spec.name} had no champion for {as_of}: the first champion change is effective from "
                f"{champions.first_effective_on(wh, spec)} (a model trained on later data never scores an earlier "
                "date; see registry.promotion_log.effective_on)")
        return for_date
    if model == "challenger":
        others = [v.version for v in versions.list_versions(wh, spec) if v.version != champion]
        if not others:
            raise NoModelError(f"{spec.name} has no challenger (no version other than the champion)")
        return max(others)
    return int(model)


def check_features_table(wh: Warehouse, spec: PipelineSpec) -> None:
    """Refuse to score when the features table lacks a spec column or has it with the wrong type."""
    schema, table = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s", (schema, table))
        have = dict(cur.fetchall())
    if not have:
        raise ScoringError(f"{schema}.{table} does not exist; run the retrain DAG's prepare/validate first")
    problems = []
    for f in spec.features:
        want = feature_sql_type(f)
        if f.name not in have:
            problems.append(f"column {f.name!r} is missing")
        elif have[f.name] != want:
            problems.append(f"column {f.name!r} is {have[f.name]}, the spec says {f.type} ({want})")
    if problems:
        raise ScoringError(f"cannot score from {schema}.{table}: " + "; ".join(problems) + " (nothing was written)")


def begin(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, model: str | int = "champion",
          role: str = "champion", *, run_id: str = "") -> ScoringTarget:
    """Check the model and the features, and create an empty stage table for (date, version, run).
    The target says how many shards score it (``scoring.rows_per_shard``: from the date's rows).

    ``model="champion"`` is the champion for ``as_of`` (:func:`airtrain.registry.champions.champion_as_of`).
    Shadow scoring of that champion itself is refused (:class:`NoModelError`): its predictions are in
    the champion table already (a challenger that was just promoted has no shadow)."""
    version = resolve_version(wh, spec, model, as_of)
    versions.get_version(wh, spec, version)
    if role == "shadow" and version == champions.champion_as_of(wh, spec, as_of):
        raise NoModelError(f"{spec.name} v{version} is the champion: its predictions are in "
                           f"{'.'.join(spec.table('predictions'))}, there is nothing to shadow")
    check_features_table(wh, spec)
    t = target_for(spec, as_of, version, role, run_id)
    if spec.scoring.rows_per_shard is not None:
        rows = date_rows(wh, spec, as_of)
        t = replace(t, shards=spec.scoring.shards_for(rows), rows=rows)
    else:
        t = replace(t, shards=spec.scoring.partitions)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(t.schema, t.stage)))
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
            ident(t.schema, t.stage), ident(t.schema, t.table)))
        # whose stage this is, for drop_orphan_stages (a stage outlives a run that died before publish)
        cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(ident(t.schema, t.stage), sql.Literal(json.dumps(
            {"airtrain_stage": True, "run_id": run_id, "created_at": dt.datetime.now(dt.UTC).isoformat()}))))
    return t


def abort(wh: Warehouse, target: ScoringTarget) -> None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(target.schema, target.stage)))


def _feature_query(spec: PipelineSpec, as_of: dt.date, shard: int, shards: int, arm_filter: str = "") -> str:
    """The shard's features for one date. No bind parameters on purpose: the ADBC driver streams
    a parameterless query with COPY in bounded record batches, but materialises the whole result
    of a parameterised one. The date is a ``datetime.date`` rendered by us and the shard numbers
    are ints, so the literal is safe."""
    if not isinstance(as_of, dt.date):
        raise TypeError("as_of must be a datetime.date")
    schema, table = spec.table("features")
    cols = ", ".join(quoted(c) for c in [spec.entity_key, spec.date_column, *spec.feature_names])
    where = f"{quoted(spec.date_column)} = DATE '{as_of.isoformat()}'"
    if shards > 1:
        where += f" AND mod(abs(hashtext({quoted(spec.entity_key)}::text)), {int(shards)}) = {int(shard)}"
    if arm_filter:  # a canary arm (built by airtrain.serving.arms.arm_condition from our own values)
        where += f" AND {arm_filter}"
    return f"SELECT {cols} FROM {quoted(schema, table)} WHERE {where}"  # noqa: S608 - allow-listed identifiers


def _shard_delete(spec: PipelineSpec, target: ScoringTarget, shard: int, shards: int) -> str:
    """Remove this shard's rows from the stage table (left by an earlier attempt that committed)."""
    where = ""
    if shards > 1:
        where = f" WHERE mod(abs(hashtext({quoted(spec.entity_key)}::text)), {int(shards)}) = {int(shard)}"
    return f"DELETE FROM {quoted(target.schema, target.stage)}{where}"  # noqa: S608 - allow-listed identifiers


def _prediction_batches(reader: Any, model: Any, spec: PipelineSpec, version: int, run_id: str,
                        threshold: float, schema: Any) -> Iterator[Any]:
    import numpy as np
    import pyarrow as pa

    reference = None
    if spec.scoring.explain is not None:
        reference = explain.reference_values(model, explain.model_inputs(model, spec))
    for batch in reader:
        if batch.num_rows == 0:
            continue
        df = batch.to_pandas()  # typed by Arrow; features_frame() casts what the model needs
        scores = np.asarray(predict_scores(model, df, spec), dtype="float64")
        if spec.target.task == "binary_classification":
            labels = pa.array((scores >= threshold).astype("int16"))
        else:
            labels = pa.nulls(len(scores), pa.int16())
        keys = batch.column(spec.entity_key)
        explained = []
        if spec.scoring.explain is not None:  # scoring.explain: top-k contributions beside the score
            explained = list(explain.explanation_arrays(model, df, spec, reference, spec.scoring.explain.top_k,
                                                        base=scores))
        yield pa.record_batch([
            keys.cast(schema.field(spec.entity_key).type),
            batch.column(spec.date_column).cast(pa.date32()),
            pa.array(np.full(len(scores), version, dtype="int32")),
            pa.array(scores),
            labels,
            pa.array([run_id] * len(scores), pa.string()),
            *explained,
        ], schema=schema)


def _explain_fields(spec: PipelineSpec) -> list[tuple[str, Any]]:
    """The Arrow fields of scoring.explain's columns (text[] and double precision[]: ADBC's binary
    COPY writes Arrow lists into PostgreSQL arrays; it cannot write jsonb)."""
    import pyarrow as pa

    if spec.scoring.explain is None:
        return []
    return [("explain_features", pa.list_(pa.string())), ("explain_contributions", pa.list_(pa.float64()))]


def score_shard(wh: Warehouse, spec: PipelineSpec, target: ScoringTarget, *, run_id: str, shard: int = 0,
                shards: int = 1, model: Any = None) -> dict[str, Any]:
    """Score one shard of the date's features into the stage table. Returns rows and timings."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    t0 = time.monotonic()
    if model is None:
        model = versions.load_artifact(wh, spec, target.version)
    key_type = pa.int64() if spec.entity_key_type == "int" else pa.string()
    schema = pa.schema([(spec.entity_key, key_type), ("as_of_date", pa.date32()), ("model_version", pa.int32()),
                        ("score", pa.float64()), ("predicted_label", pa.int16()), ("run_id", pa.string()),
                        *_explain_fields(spec)])
    uri = wh.adbc_uri()
    with adbc.connect(uri) as rconn, adbc.connect(uri) as wconn:
        with rconn.cursor() as rcur, wconn.cursor() as wcur:
            # about scoring.batch_rows rows per record batch (~100 bytes per feature row)
            rcur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(spec.scoring.batch_rows * 100)})
            # a retried shard replaces what an earlier attempt of it committed (never duplicates)
            wcur.execute(_shard_delete(spec, target, int(shard), int(shards)))
            rcur.execute(_feature_query(spec, target.as_of, int(shard), int(shards),
                                        target.arm_filter(quoted(spec.entity_key))))
            reader = rcur.fetch_record_batch()
            batches = _prediction_batches(reader, model, spec, target.version, run_id,
                                          spec.evaluation.threshold, schema)
            out = pa.RecordBatchReader.from_batches(schema, batches)
            rows = wcur.adbc_ingest(target.stage, out, mode="append", db_schema_name=target.schema)
            failpoint("score.before_commit")
        wconn.commit()
    failpoint("score.after_commit")
    return {"shard": shard, "rows": int(rows), "seconds": round(time.monotonic() - t0, 3)}


def score_date(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, run_id: str, model: str | int = "champion",
               role: str = "champion", shards: int = 1) -> dict[str, Any]:
    """begin → every shard → publish, in one process (the DAG maps the shards instead)."""
    target = begin(wh, spec, as_of, model, role, run_id=run_id)
    try:
        loaded = versions.load_artifact(wh, spec, target.version)
        parts = [score_shard(wh, spec, target, run_id=run_id, shard=s, shards=shards, model=loaded)
                 for s in range(shards)]
        return publish(wh, spec, target, sum(p["rows"] for p in parts), run_id=run_id)
    except BaseException:
        abort(wh, target)
        raise
