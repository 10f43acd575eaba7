"""Which warehouse tables each task of a real DAG run read and wrote, as PostgreSQL itself counts them.

A listener (Airflow's own task-instance hooks) snapshots the warehouse's table statistics
(``pg_stat_user_tables``: scans and inserted/updated/deleted rows per table) and its relations
(``pg_class``: names, partitions) whenever a task starts or ends, and attributes the difference to
the task that was running in between. ``dag.test()`` runs one task at a time, so every interval
belongs to one task (a deferred task's two halves are summed; nothing runs while it is deferred
except other tasks, which get their own intervals).

Statistics of a backend reach ``pg_stat_user_tables`` when it exits (PostgreSQL 15+ flushes a
backend's pending counters before its ``pg_stat_activity`` entry disappears): the airtrain core
closes every connection it opens, so a snapshot waits until no other backend is connected to the
warehouse database and then reads fresh counters (``pg_stat_clear_snapshot``).

Physical relations are mapped to the logical tables lineage names: a partition to its root, a
scoring stage table (``<table>_stage_<hash>``) to its table. A task *wrote* a table when rows of it
were inserted, updated or deleted, or when one of its partitions was attached, detached, renamed
into place or dropped (the partition swap of ``publish_predictions`` writes no row); it *read* a
table when it scanned it (sequential or index scans; a DELETE's or UPDATE's WHERE scans too, so a
written table may also appear as read).
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg2

_STAGE = re.compile(r"^(?P<table>.+)_stage_[0-9a-f]{8}(_s[0-9]+)?$")  # a stage, or a shard's table of it

_SNAPSHOT = """
SELECT c.oid, n.nspname, c.relname, c.relispartition,
       COALESCE(s.seq_scan, 0) + COALESCE(s.idx_scan, 0),
       COALESCE(s.n_tup_ins, 0) + COALESCE(s.n_tup_upd, 0) + COALESCE(s.n_tup_del, 0),
       rn.nspname, r.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
LEFT JOIN pg_class r ON r.oid = CASE WHEN c.relispartition THEN pg_partition_root(c.oid) END
LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
"""


@dataclass(frozen=True)
class _Rel:
    schema: str
    name: str
    partition: bool
    scans: int
    writes: int
    root: str | None

    @property
    def logical(self) -> str:
        if self.partition and self.root:
            return self.root
        m = _STAGE.match(self.name)
        return f"{self.schema}.{m['table'] if m else self.name}"


@dataclass
class Touches:
    """Tables read and written per task id (mapped tasks summed), ``schema.table``."""

    read: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    written: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: tasks seen finishing (their state), to tell "touched nothing" from "did not run"
    finished: dict[str, str] = field(default_factory=dict)
    #: snapshots taken while another backend was still connected (counters may be incomplete)
    unsettled: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"read": {k: sorted(v) for k, v in self.read.items()},
                "written": {k: sorted(v) for k, v in self.written.items()},
                "finished": self.finished, "unsettled": self.unsettled}


class TableTouchListener:
    """An Airflow task-instance listener recording :class:`Touches` on the warehouse at ``uri``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.touches = Touches()
        self._lock = threading.Lock()
        self._current: str | None = None
        self._last = self._snapshot("start")

    def _snapshot(self, why: str) -> dict[int, _Rel]:
        conn = psycopg2.connect(self.uri, application_name="tabletouch")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                deadline = time.monotonic() + 10
                while True:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
                    if cur.fetchone()[0] == 0:
                        break
                    if time.monotonic() > deadline:
                        self.touches.unsettled.append(why)
                        break
                    time.sleep(0.02)
                cur.execute("SELECT pg_stat_clear_snapshot()")
                cur.execute(_SNAPSHOT)
                return {oid: _Rel(schema, name, part, scans, writes, f"{rs}.{rn}" if rn else None)
                        for oid, schema, name, part, scans, writes, rs, rn in cur.fetchall()}
        finally:
            conn.close()

    def _attribute(self, why: str) -> None:
        now = self._snapshot(why)
        task = self._current or "(between tasks)"
        for oid in now.keys() | self._last.keys():
            before, after = self._last.get(oid), now.get(oid)
            rel = after or before
            assert rel is not None
            if after is not None and after.scans > (before.scans if before else 0):
                self.touches.read[task].add(rel.logical)
            wrote = after is not None and after.writes > (before.writes if before else 0)
            if before is not None and after is not None and (before.partition, before.name) != (after.partition,
                                                                                               after.name):
                wrote = wrote or before.partition or after.partition  # attached, detached or renamed into place
            if after is None and before is not None and before.partition:
                wrote = True  # a partition dropped (replaced by the swap)
            if wrote:
                self.touches.written[task].add(rel.logical)
        self._last = now

    # --- Airflow listener hooks (airflow.sdk listener manager) ---------------------------------

    def _task_started(self, task_instance: Any) -> None:
        with self._lock:
            self._attribute(f"before {task_instance.task_id}")
            self._current = task_instance.task_id

    def _task_ended(self, task_instance: Any, state: str) -> None:
        with self._lock:
            self._attribute(f"after {task_instance.task_id}")
            self._current = None
            self.touches.finished[task_instance.task_id] = state


def _hooks(listener: TableTouchListener) -> Any:
    from airflow.listeners import hookimpl

    class Hooks:
        @hookimpl
        def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
            listener._task_started(task_instance)

        @hookimpl
        def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
            listener._task_ended(task_instance, "success")

        @hookimpl
        def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
            listener._task_ended(task_instance, "skipped")

        @hookimpl
        def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
            listener._task_ended(task_instance, "failed")

    return Hooks()


class record_table_touches:  # noqa: N801 - used like a function: ``with record_table_touches(uri) as t:``
    """Record which tables each task of the DAG runs inside the block touched; yields :class:`Touches`."""

    def __init__(self, uri: str) -> None:
        self.listener = TableTouchListener(uri)
        self.hooks = _hooks(self.listener)

    def __enter__(self) -> Touches:
        from airflow.sdk.listener import get_listener_manager

        get_listener_manager().add_listener(self.hooks)
        return self.listener.touches

    def __exit__(self, *exc: Any) -> None:
        from airflow.sdk.listener import get_listener_manager

        get_listener_manager().pm.unregister(self.hooks)


def lineage_mismatches(touches: Touches, task: str, inputs: set[str], outputs: set[str],
                       ignore: frozenset[str] = frozenset(), idle_outputs: frozenset[str] = frozenset()) -> list[str]:
    """What the lineage of ``task`` (``schema.table`` names) gets wrong, measured against its touches:
    every written table is an output, every table read is an input or an output, every input was
    read and every output touched (read or written: a delete-then-insert of a partition that had
    nothing to write still scans its table) - except ``idle_outputs``, outputs the caller knows this
    run gave the task nothing to write to (say why where you pass them)."""
    read = touches.read.get(task, set()) - ignore
    written = touches.written.get(task, set()) - ignore
    out = []
    if written - outputs:
        out.append(f"{task} wrote {sorted(written - outputs)} but its lineage outputs lack them")
    if outputs - written - read - idle_outputs:
        out.append(f"{task} lists outputs {sorted(outputs - written - read - idle_outputs)} it did not touch")
    if read - inputs - outputs:
        out.append(f"{task} read {sorted(read - inputs - outputs)} but its lineage inputs lack them")
    if inputs - read - written:
        out.append(f"{task} lists inputs {sorted(inputs - read - written)} it did not read")
    return out


def extracted_tables(dag: Any, task_id: str) -> tuple[set[str], set[str]]:
    """(inputs, outputs) as ``schema.table`` that airtrain's OpenLineage extractor reports for a task of
    ``dag`` (what its START/COMPLETE events carry; run in-process, without an OpenLineage transport)."""
    from airtrain_airflow.lineage import AirtrainExtractor

    lineage = AirtrainExtractor(dag.get_task(task_id)).extract_on_complete(None)

    def names(ds: list[Any]) -> set[str]:
        return {".".join(d.name.split(".")[1:]) for d in ds if d.namespace.startswith("postgres://")}

    return names(lineage.inputs), names(lineage.outputs)


def check_lineage(touches: Touches, dag: Any, tasks: list[str], **kwargs: Any) -> list[str]:
    """:func:`lineage_mismatches` of each of ``tasks`` (which must have succeeded in the recorded runs)."""
    problems = [f"{t} did not succeed ({touches.finished.get(t)})" for t in tasks
                if touches.finished.get(t) != "success"]
    if touches.unsettled:
        problems.append(f"snapshots taken while other backends were connected: {touches.unsettled}")
    for task in tasks:
        problems += lineage_mismatches(touches, task, *extracted_tables(dag, task), **kwargs)
    return problems
