"""Publishing a date's predictions: the shards' tables attached to the stage as its hash sub-partitions,
the stage swapped in as the (date, version) partition in ONE transaction under an advisory lock
(readers see the old or the new partition, never a half-written one), orphan stage tables dropped,
and whether a date is published (and by which run).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from airtrain.faults import failpoint
from airtrain.serving.target import ScoringError, ScoringTarget
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, advisory_key, ident

log = logging.getLogger(__name__)

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


#: a stage table older than this is an orphan whatever its run's state (no run scores for that long)
STAGE_MAX_AGE = dt.timedelta(days=2)
#: the CHECK constraints a shard's table carries until it is attached (then dropped: BUCKET names the
#: stage's oid): the range partition's bounds, and the shard's hash bucket of the stage
BOUNDS, BUCKET = "airtrain_bounds", "airtrain_bucket"


def stage_comment(run_id: str, **more: Any) -> str:
    """A stage's (or a shard table's) table comment: whose it is, for :func:`drop_orphan_stages`."""
    return json.dumps({"airtrain_stage": True, "run_id": run_id, "created_at": dt.datetime.now(dt.UTC).isoformat(),
                       **more})


def shard_tables(cur: Any, target: ScoringTarget) -> list[tuple[str, dict[str, Any] | None]]:
    """(name, comment) of the tables the shards of ``target`` wrote and that are not attached yet."""
    prefix = target.shard_table(0)[:-1]  # "<stage>_s"
    cur.execute("SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n ON "
                "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' AND NOT c.relispartition AND "
                "starts_with(c.relname, %s) ORDER BY 1", (target.schema, prefix))
    out: list[tuple[str, dict[str, Any] | None]] = []
    for name, text in cur.fetchall():
        if not name[len(prefix):].isdigit():
            continue
        try:
            meta = json.loads(text or "")
        except ValueError:
            meta = None
        out.append((name, meta if isinstance(meta, dict) else None))
    return out


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
            # a stage (partitioned) and its shards' tables not attached yet (each with its run's comment)
            cur.execute("SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname "
                        "LIKE %s AND NOT c.relispartition", (schema, table.replace("_", "\\_") + "\\_stage\\_%"))
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


def publish(wh: Warehouse, spec: PipelineSpec, target: ScoringTarget, expected_rows: int | None = None,
            run_id: str | None = None, *, lock_timeout_ms: int = SWAP_LOCK_TIMEOUT_MS,
            max_wait_s: float = SWAP_MAX_WAIT_S, backoff_s: float = 0.5,
            companions: Sequence[tuple[ScoringTarget, int | None]] = ()) -> dict[str, Any]:
    """Swap the stage table in as the (date, version) partition, atomically.

    ``companions`` (a canary's other arm: ``(target, expected_rows)`` of the same date) are swapped in
    the SAME transaction, and every other version's partition of the date is dropped, so the date
    holds exactly one row per entity (:mod:`airtrain.serving.canary`).

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
    """Attach every shard's table to the stage as its hash sub-partition (each carries its primary key,
    its indexes and the CHECK constraints of its bucket and of the partition's bounds, built by the
    shard: nothing is scanned or indexed here) and add the stage's primary key (it adopts the
    shards'). Refused - nothing published - unless the shards form one complete set, each bucket
    exactly once, and their rows add up to ``expected_rows``. Returns the stage's rows."""
    cur.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", (target.schema, target.stage))
    kind = cur.fetchone()
    if kind is None or kind[0] != "p":
        raise ScoringError(f"stage table {target.schema}.{target.stage} is not partitioned by shard (made by an "
                           "earlier version of airtrain): nothing was published; re-run the scoring from "
                           "begin_scoring (clear the run's scoring tasks)")
    shards = shard_tables(cur, target)
    unreadable = [name for name, meta in shards if not meta or not {"shard", "shards", "rows"} <= meta.keys()]
    counts = {int(meta["shards"]) for _, meta in shards if meta and "shards" in meta}
    if unreadable or len(counts) > 1:
        raise ScoringError(f"the shard tables of {target.stage} do not belong together ({unreadable or sorted(counts)}"
                           "): nothing was published; re-run the scoring from begin_scoring")
    n = counts.pop() if counts else int(target.shards)
    have = sorted(int(meta["shard"]) for _, meta in shards)  # type: ignore[index]
    if have != list(range(n)):
        missing = sorted(set(range(n)) - set(have))
        raise ScoringError(f"shard(s) {missing} of {n} of {target.schema}.{target.stage} were not scored: nothing "
                           "was published")
    stage = ident(target.schema, target.stage)
    rows = 0
    for name, meta in shards:
        assert meta is not None
        # reltuples: exact, recorded by the shard's index builds (no pass over the rows)
        cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", (f'"{target.schema}"."{name}"',))
        n_rows = int(cur.fetchone()[0])
        if n_rows != int(meta["rows"]):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(target.schema, name)))
            n_rows = int(cur.fetchone()[0])
        if n_rows != int(meta["rows"]):
            raise ScoringError(f"shard table {name} has {n_rows} rows but its shard wrote {meta['rows']}; nothing "
                               "was published")
        rows += n_rows
        cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
            stage, ident(target.schema, name), sql.Literal(n), sql.Literal(int(meta["shard"]))))
    if expected_rows is not None and rows != expected_rows:
        raise ScoringError(f"stage table {target.stage} has {rows} rows but the shards reported {expected_rows}; "
                           "nothing was published")
    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({}, as_of_date, model_version)").format(
        stage, ident(f"{target.stage}_pkey"), ident(spec.entity_key)))
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
    # the shards' tables (attached to the stage by _ready_stage), by bucket
    cur.execute("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON "
                "c.oid = i.inhrelid WHERE i.inhparent = %s::regclass", (f'"{target.schema}"."{target.stage}"',))
    leaves = [(name, int(bound.rsplit("remainder", 1)[1].strip(" )"))) for name, bound in cur.fetchall()]
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(ident(target.schema, target.stage),
                                                             ident(target.partition)))
    # the leaves' CHECK constraints prove the bounds: ATTACH scans nothing, and finds every index built
    cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM {} TO {}").format(
        parent, ident(target.schema, target.partition), lo, hi))
    cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
        ident(target.schema, f"{target.stage}_pkey"), ident(f"{target.partition}_pkey")))
    for name, bucket in leaves:
        leaf = ident(target.schema, name)
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}, DROP CONSTRAINT {}").format(
            leaf, ident(BOUNDS), ident(BUCKET)))  # BUCKET names the stage's oid: never left behind
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(leaf, ident(target.leaf(bucket))))
        cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            ident(target.schema, f"{name}_pkey"), ident(f"{target.leaf(bucket)}_pkey")))
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


def is_published(wh: Warehouse, spec: PipelineSpec, day: dt.date) -> bool:
    """Whether champion predictions of ``day`` are published (the date's partition is attached)."""
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT 1 FROM {} WHERE as_of_date = %s LIMIT 1").format(
                ident(*spec.table("predictions"))), (day,))
            return cur.fetchone() is not None
    except psycopg2.errors.UndefinedTable:
        return False


def published_by_run(wh: Warehouse, spec: PipelineSpec, day: dt.date, run_id: str) -> dict[str, Any] | None:
    """The champion predictions of ``day`` that run ``run_id`` published (version, rows), or None."""
    schema, table = spec.table("predictions")
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT model_version, count(*) FROM {} WHERE as_of_date = %s AND run_id = %s "
                                "GROUP BY 1 ORDER BY 1 DESC LIMIT 1").format(ident(schema, table)), (day, run_id))
            row = cur.fetchone()
    except psycopg2.errors.UndefinedTable:
        return None
    if row is None:
        return None
    return {"as_of": day.isoformat(), "version": int(row[0]), "rows": int(row[1]), "table": f"{schema}.{table}",
            "already_published": True}
