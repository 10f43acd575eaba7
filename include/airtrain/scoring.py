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
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from airtrain import registry
from airtrain.db import Warehouse, advisory_key, ident
from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.spec import PipelineSpec, check_identifier

log = logging.getLogger(__name__)


class ScoringError(PermanentError, RuntimeError):
    """Scoring was refused or failed; nothing was published."""


#: how long one attempt of the partition swap waits for its lock (readers queue behind it meanwhile)
SWAP_LOCK_TIMEOUT_MS = 1000
#: how long the swap keeps retrying before the task fails (and Airflow retries it)
SWAP_MAX_WAIT_S = 1800.0


class SwapLockTimeout(RuntimeError):
    """The partition swap did not get its lock in time (long reads): nothing was published; retryable."""


def _swap_key(target: ScoringTarget) -> int:
    """The advisory lock every publish of the target's table takes before it locks the parent table or
    any partition (:func:`publish`: one lock order for all writers of the table)."""
    return advisory_key("predictions-swap", target.schema, target.table)


def _lock_holders(cur: Any, target: ScoringTarget) -> str:
    """Who holds a lock on the target's parent table, or its swap lock (another publish), for the log
    and the error."""
    key = _swap_key(target) & 0xFFFFFFFFFFFFFFFF  # pg_locks shows a bigint key as two unsigned halves
    cur.execute("SELECT l.pid, a.usename, a.application_name, round(extract(epoch FROM now() - a.xact_start)), "
                "l.locktype = 'advisory' FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted "
                "AND l.pid <> pg_backend_pid() AND (l.relation = %s::regclass OR (l.locktype = 'advisory' AND "
                "l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1))",
                (f'"{target.schema}"."{target.table}"', key >> 32, key & 0xFFFFFFFF))
    rows = cur.fetchall()
    return ", ".join(f"pid {r[0]} ({r[1]}, {r[2] or '-'}, {'publishing, ' if r[4] else ''}transaction open "
                     f"{r[3]} s)" for r in rows) or "another session"


class NoModelError(ScoringError):
    """There is no model to score with (no champion yet, or no challenger)."""


@dataclass(frozen=True)
class ScoringTarget:
    """Where one (date, model version) of predictions goes."""

    schema: str
    table: str  # the partitioned parent
    stage: str  # the unattached stage table
    partition: str  # the name the stage table gets when attached
    as_of: dt.date
    version: int
    role: str = "champion"  # "shadow": publishing replaces every other version's rows of the date
    shards: int = 1  # how many shards score it (decided once, by begin, from the date's rows)
    rows: int | None = None  # the date's feature rows when begin counted them
    # a canary arm (airtrain.canary): only the entities of ``arm`` under (salt, fraction) are scored
    arm: str = ""
    salt: str = ""
    fraction: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "stage": self.stage, "partition": self.partition,
                "as_of": self.as_of.isoformat(), "version": self.version, "role": self.role,
                "shards": self.shards, "rows": self.rows, "arm": self.arm, "salt": self.salt,
                "fraction": self.fraction}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoringTarget:
        return cls(d["schema"], d["table"], d["stage"], d["partition"], dt.date.fromisoformat(d["as_of"]),
                   int(d["version"]), str(d.get("role") or "champion"), int(d.get("shards") or 1),
                   None if d.get("rows") is None else int(d["rows"]), str(d.get("arm") or ""),
                   str(d.get("salt") or ""), float(d.get("fraction") or 0.0))

    def arm_filter(self, key_sql: str) -> str:
        """SQL text selecting this arm's entities ('' = every entity)."""
        if not self.arm:
            return ""
        from airtrain.canary import arm_condition

        return arm_condition(key_sql, self.salt, self.fraction, self.arm)


def _q(*parts: str) -> str:
    """Quote allow-listed identifiers for ADBC SQL text (check_identifier forbids quotes)."""
    return ".".join(f'"{check_identifier(p)}"' for p in parts)


def target_for(spec: PipelineSpec, as_of: dt.date, version: int, role: str = "champion", run_id: str = ""
               ) -> ScoringTarget:
    """Where ``version``'s predictions of ``as_of`` go. The stage table is named per run as well, so
    two runs scoring the same date at once never write into (or drop) each other's stage."""
    kind = "shadow_predictions" if role == "shadow" else "predictions"
    schema, table = spec.table(kind)
    suffix = f"p{as_of:%Y%m%d}_v{version}"
    stage_hash = hashlib.blake2b(f"{table}/{suffix}/{run_id}".encode(), digest_size=4).hexdigest()
    return ScoringTarget(schema, table, f"{table}_stage_{stage_hash}", f"{table}_{suffix}", as_of, version,
                         "shadow" if role == "shadow" else "champion")


def resolve_version(wh: Warehouse, spec: PipelineSpec, model: str | int | None, as_of: dt.date | None = None
                    ) -> int:
    """'champion' → the champion (with ``as_of``: the champion *for that date*,
    :func:`airtrain.registry.champion_as_of` - a re-run or backfill of an old date is scored by the
    model that was live for it); 'challenger' → newest non-champion version; or a version number.
    ``None`` or ``""`` (e.g. the run trained no challenger) is :class:`NoModelError`."""
    if model is None or (isinstance(model, str) and not model.strip()):
        raise NoModelError(f"{spec.name}: no model version given (this run trained no challenger)")
    champion = registry.champion_version(wh, spec)
    if model == "champion":
        if champion is None:
            raise NoModelError(
                f"{spec.name} has no champion model yet, so there is nothing to score with; run "
                f"{spec.retrain_dag_id} until a model passes the promotion gate (or roll back to a version)"
            )
        if as_of is None:
            return champion
        for_date = registry.champion_as_of(wh, spec, as_of)
        if for_date is None:
            raise NoModelError(
                f"{spec.name} had no champion for {as_of}: the first champion change is effective from "
                f"{registry.first_effective_on(wh, spec)} (a model trained on later data never scores an earlier "
                "date; see registry.promotion_log.effective_on)")
        return for_date
    if model == "challenger":
        versions = [v.version for v in registry.list_versions(wh, spec) if v.version != champion]
        if not versions:
            raise NoModelError(f"{spec.name} has no challenger (no version other than the champion)")
        return max(versions)
    return int(model)


def newest_validated_date(wh: Warehouse, spec: PipelineSpec) -> dt.date | None:
    """The newest date of the features table (None when it is empty)."""
    schema, table = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT max({}) FROM {}").format(ident(spec.date_column), ident(schema, table)))
        row = cur.fetchone()
    return row[0] if row else None


def check_features_table(wh: Warehouse, spec: PipelineSpec) -> None:
    """Refuse to score when the features table lacks a spec column or has it with the wrong type."""
    from airtrain.schema import feature_sql_type

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


def date_rows(wh: Warehouse, spec: PipelineSpec, as_of: dt.date) -> int:
    """The feature rows of one date (what the shard count follows)."""
    schema, table = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            ident(schema, table), ident(spec.date_column)), (as_of,))
        return int(cur.fetchone()[0])


def begin(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, model: str | int = "champion",
          role: str = "champion", *, run_id: str = "") -> ScoringTarget:
    """Check the model and the features, and create an empty stage table for (date, version, run).
    The target says how many shards score it (``scoring.rows_per_shard``: from the date's rows).

    ``model="champion"`` is the champion for ``as_of`` (:func:`airtrain.registry.champion_as_of`).
    Shadow scoring of that champion itself is refused (:class:`NoModelError`): its predictions are in
    the champion table already (a challenger that was just promoted has no shadow)."""
    version = resolve_version(wh, spec, model, as_of)
    registry.get_version(wh, spec, version)
    if role == "shadow" and version == registry.champion_as_of(wh, spec, as_of):
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


#: a stage table older than this is an orphan whatever its run's state (no run scores for that long)
STAGE_MAX_AGE = dt.timedelta(days=2)


def drop_orphan_stages(wh: Warehouse, spec: PipelineSpec, *, is_live: Any, keep_run: str = "",
                       max_age: dt.timedelta = STAGE_MAX_AGE, now: dt.datetime | None = None) -> list[str]:
    """Drop stage tables left by runs that died between ``begin`` and ``publish``; returns their names.

    The rule: a stage table (``<table>_stage_*`` in the predictions schema, never attached) is
    dropped when its run - recorded in its table comment by :func:`begin` - is not live
    (``is_live(run_id)`` is False: the orchestrator says that run is not queued or running), or
    when it is older than ``max_age``, or when it has no readable comment (made before stages
    recorded their run). The stage of ``keep_run`` (the caller's own run) and of any live run
    younger than ``max_age`` is never dropped."""
    now = now or dt.datetime.now(dt.UTC)
    dropped = []
    for kind in ("predictions", "shadow_predictions"):
        schema, table = spec.table(kind)
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s "
                        "AND NOT c.relispartition", (schema, table.replace("_", "\\_") + "\\_stage\\_%"))
            stages = cur.fetchall()
        for name, comment in stages:
            try:
                meta = json.loads(comment or "")
                run, created = str(meta["run_id"]), dt.datetime.fromisoformat(meta["created_at"])
            except (ValueError, KeyError, TypeError):
                run, created = None, None
            if run is not None and (run == keep_run or (now - created < max_age and is_live(run))):
                continue
            with wh.connect() as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(schema, name)))
            log.info("dropped orphan stage table %s.%s (run %s, created %s)", schema, name, run, created)
            dropped.append(f"{schema}.{name}")
    return dropped


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
    cols = ", ".join(_q(c) for c in [spec.entity_key, spec.date_column, *spec.feature_names])
    where = f"{_q(spec.date_column)} = DATE '{as_of.isoformat()}'"
    if shards > 1:
        where += f" AND mod(abs(hashtext({_q(spec.entity_key)}::text)), {int(shards)}) = {int(shard)}"
    if arm_filter:  # a canary arm (built by airtrain.canary.arm_condition from our own values)
        where += f" AND {arm_filter}"
    return f"SELECT {cols} FROM {_q(schema, table)} WHERE {where}"  # noqa: S608 - allow-listed identifiers


def _shard_delete(spec: PipelineSpec, target: ScoringTarget, shard: int, shards: int) -> str:
    """Remove this shard's rows from the stage table (left by an earlier attempt that committed)."""
    where = ""
    if shards > 1:
        where = f" WHERE mod(abs(hashtext({_q(spec.entity_key)}::text)), {int(shards)}) = {int(shard)}"
    return f"DELETE FROM {_q(target.schema, target.stage)}{where}"  # noqa: S608 - allow-listed identifiers


def _prediction_batches(reader: Any, model: Any, spec: PipelineSpec, version: int, run_id: str,
                        threshold: float, schema: Any) -> Iterator[Any]:
    import numpy as np
    import pyarrow as pa

    from airtrain import explain
    from airtrain.evaluation import predict_scores

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
        model = registry.load_artifact(wh, spec, target.version)
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
                                        target.arm_filter(_q(spec.entity_key))))
            reader = rcur.fetch_record_batch()
            batches = _prediction_batches(reader, model, spec, target.version, run_id,
                                          spec.evaluation.threshold, schema)
            out = pa.RecordBatchReader.from_batches(schema, batches)
            rows = wcur.adbc_ingest(target.stage, out, mode="append", db_schema_name=target.schema)
            failpoint("score.before_commit")
        wconn.commit()
    failpoint("score.after_commit")
    return {"shard": shard, "rows": int(rows), "seconds": round(time.monotonic() - t0, 3)}


def publish(wh: Warehouse, spec: PipelineSpec, target: ScoringTarget, expected_rows: int | None = None,
            run_id: str | None = None, *, lock_timeout_ms: int = SWAP_LOCK_TIMEOUT_MS,
            max_wait_s: float = SWAP_MAX_WAIT_S, backoff_s: float = 0.5,
            companions: Sequence[tuple[ScoringTarget, int | None]] = ()) -> dict[str, Any]:
    """Swap the stage table in as the (date, version) partition, atomically.

    ``companions`` (a canary's other arm: ``(target, expected_rows)`` of the same date) are swapped in
    the SAME transaction, and every other version's partition of the date is dropped, so the date
    holds exactly one row per entity (:mod:`airtrain.canary`).

    The swap waits at most ``lock_timeout_ms`` for its lock each attempt and retries with backoff
    (0.5 s doubling, at most 30 s apart) for up to ``max_wait_s``, so a long read delays the publish
    instead of blocking every reader queued behind it; then :class:`SwapLockTimeout` (retried).

    Safe to retry in the same run (``run_id`` given): when the stage table is gone because this run
    already swapped it in (the task died after the commit, before reporting success), the attached
    partition holds exactly this run's rows, and that is recognised as done instead of failing.

    Lock order - the same in every publish, so two publishes (two runs of a pipeline, different dates)
    never wait on each other in a cycle: (1) the advisory lock of the (table, date); (2) this run's own
    stage tables (named per run: no other session locks them); (3) the table's advisory *swap* lock
    (:func:`_swap_key`), taken before (4) the parent table and its partitions (DETACH / ATTACH). The
    catalog reads in between open no relation. The expensive part (the primary-key build of the
    stage) runs before (3), so publishes of different dates still overlap there."""
    parent = ident(target.schema, target.table)
    targets = [(target, expected_rows), *companions]
    if any(t.as_of != target.as_of or (t.schema, t.table) != (target.schema, target.table) for t, _ in targets):
        raise ScoringError("a publish swaps partitions of one date of one table only")
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)",  # (1)
                    (advisory_key("predictions", target.schema, target.table, target.as_of.isoformat()),))
        present = []
        for t, _ in targets:
            cur.execute("SELECT to_regclass(%s)", (f'"{t.schema}"."{t.stage}"',))
            present.append(cur.fetchone()[0] is not None)
        if not any(present):
            done = [_already_published(cur, t, n, run_id) for t, n in targets]
            return _combined(done)
        if not all(present):
            raise ScoringError(f"only some stage tables of {target.as_of} exist ({[t.stage for t, _ in targets]}): "
                               "nothing was published; re-run the scoring from begin_scoring")
        cur.execute("SET LOCAL maintenance_work_mem = '512MB'")  # the primary-key build below sorts in memory
        rows = [_ready_stage(cur, spec, t, n) for t, n in targets]  # (2)
        keep = {t.partition for t, _ in targets}
        # a date holds the versions of ONE scoring: a shadow date one version, a canary date its two arms,
        # any other date its champion only - a re-score (a re-run with new rules, a rollback, a decided
        # canary) drops every other version's partition of the date in this transaction, so _latest
        # never serves an older version's row for an entity the re-score no longer has (quarantined)
        supersede = True
        # The swap needs an ACCESS EXCLUSIVE lock on the parent (DETACH). Behind a long analyst query
        # it would wait, and every new reader would queue behind it: wait at most lock_timeout per
        # attempt instead, step back (readers go on), and retry with backoff until max_wait_s.
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout_ms)}ms",))
        t0, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            cur.execute("SAVEPOINT airtrain_swap")
            try:
                # (3) then (4); waiting for another publish's swap is bounded by lock_timeout like the rest
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_swap_key(target),))
                swapped = [_swap_in(cur, parent, t, keep if supersede else None) for t, _ in targets]
                break
            except psycopg2.errors.LockNotAvailable:
                cur.execute("ROLLBACK TO SAVEPOINT airtrain_swap")
                holders = _lock_holders(cur, target)
                waited = time.monotonic() - t0
                if waited >= max_wait_s:
                    raise SwapLockTimeout(
                        f"publishing {target.schema}.{target.partition} could not lock {target.schema}.{target.table} "
                        f"in {waited:.0f} s ({attempt} attempts of {lock_timeout_ms} ms): held by {holders}; "
                        "nothing was published (the task is retried)") from None
                pause = min(backoff_s * 2 ** (attempt - 1), 30.0, max(max_wait_s - waited, 0.0))
                log.warning("publish %s: %s.%s is locked by %s; stepping back for %.1f s (attempt %s)",
                            target.partition, target.schema, target.table, holders, pause, attempt)
                time.sleep(pause)
        failpoint("publish.before_commit")
    failpoint("publish.after_commit")
    done = [{"table": f"{t.schema}.{t.table}", "partition": t.partition, "rows": n, "replaced": rep,
             "as_of": t.as_of.isoformat(), "version": t.version, "arm": t.arm, "superseded": sup,
             "lock_attempts": attempt} for (t, _), n, (rep, sup) in zip(targets, rows, swapped, strict=True)]
    return _combined(done)


def _combined(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's publish result; with companions (a canary), the main one's plus every arm's."""
    if len(results) == 1:
        return results[0]
    out = dict(results[0])
    out.update(rows=sum(r["rows"] for r in results), replaced=any(r["replaced"] for r in results),
               superseded=sorted({s for r in results for s in r["superseded"]}),
               arms={r.get("arm") or "champion": {"version": r["version"], "rows": r["rows"],
                                                  "partition": r["partition"]} for r in results})
    return out


def _ready_stage(cur: Any, spec: PipelineSpec, target: ScoringTarget, expected_rows: int | None) -> int:
    """Primary key, row count check and the CHECK constraint matching the partition bounds (so ATTACH
    does not rescan); returns the stage's rows."""
    stage = ident(target.schema, target.stage)
    # The primary-key build scans the whole stage table and records the exact number of rows
    # it saw in pg_class.reltuples, so the count check needs no extra pass over the data.
    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({}, as_of_date, model_version)").format(
        stage, ident(f"{target.stage}_pkey"), ident(spec.entity_key)))
    cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                (f'"{target.schema}"."{target.stage}"',))
    rows = int(cur.fetchone()[0])
    if expected_rows is None or rows != expected_rows:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(stage))
        rows = int(cur.fetchone()[0])
    if expected_rows is not None and rows != expected_rows:
        raise ScoringError(f"stage table {target.stage} has {rows} rows but the shards reported {expected_rows}; "
                           "nothing was published")
    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (as_of_date IS NOT NULL AND "
                        "model_version IS NOT NULL AND as_of_date = {} AND model_version = {})").format(
        stage, ident(f"{target.table}_bounds"[:63]), sql.Literal(target.as_of.isoformat()),
        sql.Literal(target.version)))
    return rows


def _swap_in(cur: Any, parent: sql.Composable, target: ScoringTarget, keep: set[str] | None
             ) -> tuple[bool, list[str]]:
    """Replace the (date, version) partition by the stage table; with ``keep``, also drop the date's
    partitions of other versions that are not in ``keep``. Returns (replaced, superseded)."""
    lo = sql.SQL("({}, {})").format(sql.Literal(target.as_of.isoformat()), sql.Literal(target.version))
    hi = sql.SQL("({}, {})").format(sql.Literal(target.as_of.isoformat()), sql.Literal(target.version + 1))
    cur.execute("SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (target.schema, target.partition))
    replaced = cur.fetchone() is not None
    if replaced:
        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, ident(target.schema, target.partition)))
        cur.execute(sql.SQL("DROP TABLE {}").format(ident(target.schema, target.partition)))
    # one shadow version per date: the newest run's challenger replaces the rest; a canary's two arms
    # replace every other version of the date (one row per entity and date)
    superseded = [n for n in _other_versions_of_date(cur, target) if n not in keep] if keep is not None else []
    for name in superseded:
        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, ident(target.schema, name)))
        cur.execute(sql.SQL("DROP TABLE {}").format(ident(target.schema, name)))
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(ident(target.schema, target.stage),
                                                             ident(target.partition)))
    cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM {} TO {}").format(
        parent, ident(target.schema, target.partition), lo, hi))
    cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
        ident(target.schema, target.partition), ident(f"{target.table}_bounds"[:63])))
    cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
        ident(target.schema, f"{target.stage}_pkey"), ident(f"{target.partition}_pkey")))
    return replaced, superseded


def _already_published(cur: Any, target: ScoringTarget, expected_rows: int | None, run_id: str | None
                       ) -> dict[str, Any]:
    """The stage table is gone: succeed only if this run's publish committed (a retry after the
    commit), i.e. the (date, version) partition holds exactly this run's rows."""
    cur.execute("SELECT to_regclass(%s)", (f'"{target.schema}"."{target.partition}"',))
    rows, runs = 0, []
    if cur.fetchone()[0] is not None:
        cur.execute(sql.SQL("SELECT count(*), array_agg(DISTINCT run_id) FROM {}").format(
            ident(target.schema, target.partition)))
        rows, runs = cur.fetchone()
        rows, runs = int(rows), list(runs or [])
    if run_id and runs == [run_id] and (expected_rows is None or rows == expected_rows):
        log.info("%s.%s already holds run %s's %s rows: published by an earlier try of this task", target.schema,
                 target.partition, run_id, rows)
        return {"table": f"{target.schema}.{target.table}", "partition": target.partition, "rows": rows,
                "replaced": False, "as_of": target.as_of.isoformat(), "version": target.version, "arm": target.arm,
                "superseded": [], "already_published": True}
    raise ScoringError(f"stage table {target.schema}.{target.stage} does not exist and "
                       f"{target.schema}.{target.partition} holds {rows} rows of run(s) {runs}, not "
                       f"{expected_rows} rows of run {run_id}: nothing was published; re-run the scoring "
                       "from begin_scoring (clear the run's scoring tasks)")


def _other_versions_of_date(cur: Any, target: ScoringTarget) -> list[str]:
    """Attached partitions of the target's date made by other model versions (``<table>_pYYYYMMDD_v<n>``)."""
    prefix = f"{target.table}_p{target.as_of:%Y%m%d}_v"
    cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE n.nspname = %s AND p.relname = %s", (target.schema, target.table))
    return sorted(name for (name,) in cur.fetchall()
                  if name.startswith(prefix) and name[len(prefix):].isdigit() and name != target.partition)


def score_date(wh: Warehouse, spec: PipelineSpec, as_of: dt.date, *, run_id: str, model: str | int = "champion",
               role: str = "champion", shards: int = 1) -> dict[str, Any]:
    """begin → every shard → publish, in one process (the DAG maps the shards instead)."""
    target = begin(wh, spec, as_of, model, role, run_id=run_id)
    try:
        loaded = registry.load_artifact(wh, spec, target.version)
        parts = [score_shard(wh, spec, target, run_id=run_id, shard=s, shards=shards, model=loaded)
                 for s in range(shards)]
        return publish(wh, spec, target, sum(p["rows"] for p in parts), run_id=run_id)
    except BaseException:
        abort(wh, target)
        raise
