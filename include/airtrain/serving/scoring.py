"""Batch scoring: stream features out, predictions in, then swap the partition atomically.

Prediction tables (``predictions.<name>`` and ``predictions.<name>_shadow``) are partitioned by
RANGE (as_of_date, model_version): one partition per scored date and model version. Writing a date:

1. :func:`begin` creates an empty *stage* table shaped like the parent and partitioned by HASH of the
   entity key (not attached: readers cannot see it), checks that the model exists and the features
   table has the spec's columns.
2. :func:`score_shard` (one call per shard; shards run in parallel as mapped Airflow tasks) scores
   the entities of its hash bucket (``satisfies_hash_partition``: PostgreSQL's own hash partitioning
   of the stage decides which shard owns an entity) into ITS OWN table: it streams the feature rows
   out by Arrow record batches (ADBC), scores each batch, streams the predictions in with ADBC's
   binary COPY, then builds that table's primary key and indexes and the CHECK constraints that let
   it be attached without a rescan - all in one transaction, so a shard's table is complete or
   absent. Memory is bounded by ``batch_rows``, never by the partition size; the index builds of
   the shards run in parallel, each over its own rows.
3. :func:`publish` attaches the shards' tables to the stage as its hash partitions (checking that
   every shard is there and the row counts), and in ONE transaction under an advisory lock detaches
   and drops the old partition (if any) and attaches the stage in its place: no index is built and
   no row is scanned while the table's lock is held. Readers see the old or the new partition,
   never a half-written or empty one; GRANTs and views are on the parent, so they survive.

A failure before publish leaves the published predictions untouched (the stage and its shards'
tables are dropped by :func:`abort` or by the next :func:`begin` of the same run). Stage tables are
named per (date, version, run), so concurrent runs of one date never share one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from psycopg2 import sql
from threadpoolctl import threadpool_limits

from airtrain.data.features import date_rows
from airtrain.data.tables import feature_sql_type
from airtrain.faults import failpoint
from airtrain.model import explain
from airtrain.model.evaluation import predict_scores
from airtrain.registry import champions, versions
from airtrain.serving.publish import BOUNDS, BUCKET, publish, shard_tables, stage_comment
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
        create_stage(cur, spec, t, run_id)
    return t


def create_stage(cur: Any, spec: PipelineSpec, target: ScoringTarget, run_id: str) -> None:
    """The (date, version, run)'s empty stage, partitioned by HASH of the entity key: one sub-partition
    per shard, attached by publish (an earlier stage of the same run, and its shards' tables, dropped)."""
    _drop_stage(cur, target)
    cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS) PARTITION BY HASH ({})").format(
        ident(target.schema, target.stage), ident(target.schema, target.table), ident(spec.entity_key)))
    # whose stage this is, for drop_orphan_stages (a stage outlives a run that died before publish)
    cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(ident(target.schema, target.stage), sql.Literal(
        stage_comment(run_id))))


def _drop_stage(cur: Any, target: ScoringTarget) -> None:
    """The stage (with the shard tables attached to it) and the shards' tables not attached yet."""
    for name, _ in shard_tables(cur, target):
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(target.schema, name)))
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(target.schema, target.stage)))


def abort(wh: Warehouse, target: ScoringTarget) -> None:
    with wh.connect() as conn, conn.cursor() as cur:
        _drop_stage(cur, target)


def _feature_query(spec: PipelineSpec, as_of: dt.date, shard: int, shards: int, arm_filter: str = "",
                   stage_oid: int = 0) -> str:
    """The shard's features for one date: the entities whose key falls in hash bucket ``shard`` of
    ``shards`` of the stage (``stage_oid``: PostgreSQL's hash partitioning of the stage by the entity
    key, so the shard's rows are exactly its sub-partition's). No bind parameters on purpose: the
    ADBC driver streams a parameterless query with COPY in bounded record batches, but materialises
    the whole result of a parameterised one. The date is a ``datetime.date`` rendered by us and the
    oid and shard numbers are ints, so the literal is safe."""
    if not isinstance(as_of, dt.date):
        raise TypeError("as_of must be a datetime.date")
    schema, table = spec.table("features")
    cols = ", ".join(quoted(c) for c in [spec.entity_key, spec.date_column, *spec.feature_names])
    where = f"{quoted(spec.date_column)} = DATE '{as_of.isoformat()}'"
    if shards > 1:
        where += f" AND {_bucket(spec, stage_oid, shard, shards)}"
    if arm_filter:  # a canary arm (built by airtrain.serving.arms.arm_condition from our own values)
        where += f" AND {arm_filter}"
    return f"SELECT {cols} FROM {quoted(schema, table)} WHERE {where}"  # noqa: S608 - allow-listed identifiers


def _sql_string(text: str) -> str:
    """``text`` as a dollar-quoted SQL literal (ADBC's DDL takes no parameters; no escaping rule of the
    server's settings applies inside dollar quotes)."""
    tag = f"$a{secrets.token_hex(6)}$"
    if "\x00" in text or tag in text:
        raise ValueError("cannot quote this text")
    return f"{tag}{text}{tag}"


def _bucket(spec: PipelineSpec, stage_oid: int, shard: int, shards: int) -> str:
    """True for the keys of hash bucket ``shard`` of ``shards`` of the stage: the very expression of the
    partition constraint PostgreSQL gives that sub-partition (so, as a CHECK constraint of the shard's
    table, it lets ATTACH skip the scan)."""
    if int(stage_oid) <= 0:
        raise ScoringError("a sharded scoring needs its stage table (scoring.begin)")
    return f"satisfies_hash_partition({int(stage_oid)}::oid, {int(shards)}, {int(shard)}, {quoted(spec.entity_key)})"


def finish_shard_sql(spec: PipelineSpec, target: ScoringTarget, shard: int, shards: int, stage_oid: int, *,
                     run_id: str, rows: int) -> list[str]:
    """After the shard's rows are in its table: its primary key, the indexes the parent has, the CHECK
    constraints of its place (the date and version: the range partition's bounds; its hash bucket) so
    that publish attaches it without scanning, and the comment publish reads (run, shard of shards,
    rows). Our own identifiers and ints only, and a dollar-quoted comment."""
    table = quoted(target.schema, target.shard_table(shard))
    key = quoted(spec.entity_key)
    d = target.as_of.isoformat()
    ddl = [f'ALTER TABLE {table} ADD CONSTRAINT {quoted(target.shard_table(shard) + "_pkey")} PRIMARY KEY '
           f"({key}, as_of_date, model_version)",
           f"CREATE INDEX ON {table} (as_of_date)", f"CREATE INDEX ON {table} (model_version, as_of_date)",
           f"ALTER TABLE {table} ADD CONSTRAINT {quoted(BOUNDS)} CHECK (as_of_date IS NOT NULL AND model_version IS "
           f"NOT NULL AND as_of_date = '{d}'::date AND model_version = {int(target.version)})"]
    # also for one shard (modulus 1): without it, ATTACH would scan the table to prove what is trivially true
    ddl.append(f"ALTER TABLE {table} ADD CONSTRAINT {quoted(BUCKET)} CHECK ({_bucket(spec, stage_oid, shard, shards)})")
    comment = stage_comment(run_id, shard=int(shard), shards=int(shards), rows=int(rows))
    ddl.append(f"COMMENT ON TABLE {table} IS {_sql_string(comment)}")
    return ddl


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
        explained: Any = []
        if spec.scoring.explain is not None:  # scoring.explain: top-k contributions beside the score
            scores, explained = explain.score_with_explanations(model, df, spec, reference,
                                                                spec.scoring.explain.top_k)
        else:
            scores = np.asarray(predict_scores(model, df, spec), dtype="float64")
        if spec.target.task == "binary_classification":
            labels = pa.array((scores >= threshold).astype("int16"))
        else:
            labels = pa.nulls(len(scores), pa.int16())
        keys = batch.column(spec.entity_key)
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


THREADS_ENV = "AIRTRAIN_SCORING_THREADS"


def scoring_threads(shards: int) -> int:
    """Threads the model may use in one shard's process (its OpenMP and BLAS pools, set with
    threadpoolctl): ``$AIRTRAIN_SCORING_THREADS``, else this machine's usable cores shared by the date's
    shards, which run at once. Each shard's model otherwise uses every core: measured here, two
    processes scoring with explanations on 2 cores ran 1.44x faster together with one thread each."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ScoringError(f"{THREADS_ENV} must be a whole number of threads >= 1 (it is {value!r})")
        return int(value)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(shards)))


def score_shard(wh: Warehouse, spec: PipelineSpec, target: ScoringTarget, *, run_id: str, shard: int = 0,
                shards: int = 1, model: Any = None) -> dict[str, Any]:
    """Score one shard of the date's features into the stage table. Returns rows and timings."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    threads = scoring_threads(shards)
    t0 = time.monotonic()
    if model is None:
        model = versions.load_artifact(wh, spec, target.version)
    key_type = pa.int64() if spec.entity_key_type == "int" else pa.string()
    schema = pa.schema([(spec.entity_key, key_type), ("as_of_date", pa.date32()), ("model_version", pa.int32()),
                        ("score", pa.float64()), ("predicted_label", pa.int16()), ("run_id", pa.string()),
                        *_explain_fields(spec)])
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)::oid", (f'"{target.schema}"."{target.stage}"',))
        stage_oid = cur.fetchone()[0]
    if stage_oid is None:
        raise ScoringError(f"the stage table {target.schema}.{target.stage} does not exist (its run was published, "
                           "aborted or dropped as an orphan): re-run the scoring from begin_scoring")
    mine = quoted(target.schema, target.shard_table(shard))
    uri = wh.adbc_uri()
    with adbc.connect(uri) as rconn, adbc.connect(uri) as wconn:
        with rconn.cursor() as rcur, wconn.cursor() as wcur:
            # about scoring.batch_rows rows per record batch (~100 bytes per feature row)
            rcur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(spec.scoring.batch_rows * 100)})
            # the shard's own table, shaped like the stage (a canary candidate's default arm included); a
            # retried shard replaces what an earlier attempt of it committed (never duplicates)
            wcur.execute(f"DROP TABLE IF EXISTS {mine}")
            wcur.execute(f"CREATE TABLE {mine} (LIKE {quoted(target.schema, target.stage)} INCLUDING DEFAULTS)")
            rcur.execute(_feature_query(spec, target.as_of, int(shard), int(shards),
                                        target.arm_filter(quoted(spec.entity_key)), stage_oid))
            reader = rcur.fetch_record_batch()
            batches = _prediction_batches(reader, model, spec, target.version, run_id,
                                          spec.evaluation.threshold, schema)
            out = pa.RecordBatchReader.from_batches(schema, batches)
            with threadpool_limits(limits=threads):  # the batches are scored while ADBC pulls them
                rows = wcur.adbc_ingest(target.shard_table(shard), out, mode="append", db_schema_name=target.schema)
            t_index = time.monotonic()
            wcur.execute("SET LOCAL maintenance_work_mem = '256MB'")  # the primary-key build sorts in memory
            for ddl in finish_shard_sql(spec, target, int(shard), int(shards), int(stage_oid), run_id=run_id,
                                        rows=int(rows)):
                wcur.execute(ddl)
            failpoint("score.before_commit")
        wconn.commit()
    failpoint("score.after_commit")
    return {"shard": shard, "rows": int(rows), "threads": threads, "seconds": round(time.monotonic() - t0, 3),
            "index_seconds": round(time.monotonic() - t_index, 3)}


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
