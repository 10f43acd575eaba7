"""The warehouse invariants, checked by the reliability tests after every fault (docs/RELIABILITY.md).

:func:`check` returns the list of violations (empty = all hold):

1. every landed row of a validated, unblocked partition is in the features table or in quarantine,
   exactly once (counts per partition; keys are unique by primary key);
2. no duplicate predictions, and every published partition holds exactly the date's validated rows (a
   canary's date: its two arms' partitions together, one row per entity);
3. no stage table (a half-written prediction partition) is left attached or visible to readers;
4. exactly one champion per pipeline, whose artifact exists and matches its checksum;
5. one promotion-log row per champion change: the log is a chain (each row's from_version is the
   previous row's to_version) ending at the current champion;
6. one retrain per drift window: a ``retrain`` decision that recorded a run names its own
   deterministic run id (none while its trigger has not created the run);
7. one shadow (challenger) version per scored date.

No Airflow import; pure SQL against the warehouse. From a shell: ``airtrain check`` (``make check`` on
the local stack) prints every invariant of every pipeline with its result and exits 1 when one fails:

    airtrain check --url postgresql://reader_or_owner@host/warehouse [--spec-dir include/pipelines]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from airtrain.spec import PipelineSpec, scan_specs
from airtrain.warehouse.connection import Warehouse, ident
from airtrain.warehouse.redaction import redact_text


def _all(cur: Any, query: sql.Composable, params: tuple = ()) -> list[tuple]:
    cur.execute(query, params)
    return cur.fetchall()


#: the invariants, in the order :func:`results` reports them
INVARIANTS = (
    "landed rows are validated or quarantined, exactly once",
    "predictions are unique and complete per published date",
    "no stage table is attached as a partition",
    "at most one champion, its artifact intact",
    "the promotion log is a chain ending at the champion",
    "one retrain per drift window",
    "one shadow version per scored date",
)


def check(wh: Warehouse, spec: PipelineSpec) -> list[str]:
    """Every violation of the pipeline's invariants (empty = all hold)."""
    return [p for _, problems in results(wh, spec) for p in problems]


def results(wh: Warehouse, spec: PipelineSpec) -> list[tuple[str, list[str]]]:
    """(invariant, its violations) for each of :data:`INVARIANTS`, in order."""
    starts: list[int] = []  # where each invariant's violations start in the list
    problems = _check(wh, spec, starts)
    ends = [*starts[1:], len(problems)]
    return [(name, problems[a:b]) for name, a, b in zip(INVARIANTS, starts, ends, strict=True)]


def _check(wh: Warehouse, spec: PipelineSpec, starts: list[int]) -> list[str]:
    problems: list[str] = []
    rs, rt = spec.table("raw")
    fs, ft = spec.table("features")
    qs, qt = spec.table("quarantine")
    ps, pt = spec.table("predictions")
    reg, mon = spec.warehouse.registry_schema, spec.warehouse.monitoring_schema
    d = ident(spec.date_column)
    with wh.connect() as conn, conn.cursor() as cur:
        # 1. landed rows end up validated or quarantined, exactly once
        starts.append(len(problems))
        rows = _all(cur, sql.SQL(
            "SELECT v.partition_date, v.rows_total, "
            "(SELECT count(*) FROM {raw} r WHERE r._partition_date = v.partition_date), "
            "(SELECT count(*) FROM {feat} f WHERE f.{d} = v.partition_date), "
            "(SELECT count(*) FROM {quar} q WHERE q._partition_date = v.partition_date) "
            "FROM {vr} v WHERE v.pipeline = %s AND NOT v.blocked ORDER BY 1").format(
            raw=ident(rs, rt), feat=ident(fs, ft), quar=ident(qs, qt), d=d, vr=ident(mon, "validation_runs")),
            (spec.name,))
        for date, total, raw, feat, quar in rows:
            if raw != total or feat + quar != raw:
                problems.append(f"{date}: {raw} landed rows (validation saw {total}) but {feat} validated + "
                                f"{quar} quarantined")
        # 2. predictions: unique, complete per published partition
        starts.append(len(problems))
        dup = _all(cur, sql.SQL("SELECT {k}, as_of_date, model_version, count(*) FROM {p} GROUP BY 1, 2, 3 "
                                "HAVING count(*) > 1 LIMIT 5").format(k=ident(spec.entity_key), p=ident(ps, pt)))
        if dup:
            problems.append(f"duplicate predictions: {dup}")
        # a canary's date (a partition with arm 'candidate') is complete across its two arms' partitions
        parts = _all(cur, sql.SQL(
            "WITH canary AS (SELECT DISTINCT as_of_date FROM {p} WHERE arm = 'candidate') "
            "SELECT p.as_of_date, CASE WHEN c.as_of_date IS NULL THEN 'v' || p.model_version ELSE 'canary arms' END, "
            "count(*), count(DISTINCT p.{k}), (SELECT count(*) FROM {feat} f WHERE f.{d} = p.as_of_date) "
            "FROM {p} p LEFT JOIN canary c ON c.as_of_date = p.as_of_date GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(feat=ident(fs, ft), d=d, p=ident(ps, pt), k=ident(spec.entity_key)))
        for date, version, n, distinct, expected in parts:
            if n != expected or distinct != n:
                problems.append(f"predictions for {date} {version}: {n} rows ({distinct} entities) but {expected} "
                                "validated rows")
        # 3. no stage table attached as a partition
        starts.append(len(problems))
        # (a date's partition and its shards' sub-partitions: every level of the tree)
        stages = _all(cur, sql.SQL(
            "SELECT c.relname FROM pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid "
            "WHERE t.level > 0 AND c.relname LIKE %s"), (f'"{ps}"."{pt}"', "%stage%"))
        if stages:
            problems.append(f"stage tables attached to {ps}.{pt}: {stages}")
        # 4. one champion, artifact intact
        starts.append(len(problems))
        champs = _all(cur, sql.SQL("SELECT c.version, m.artifact, m.artifact_sha256 FROM {c} c "
                                   "LEFT JOIN {m} m ON m.pipeline = c.pipeline AND m.version = c.version "
                                   "WHERE c.pipeline = %s").format(
            c=ident(reg, "champions"), m=ident(reg, "model_versions")), (spec.name,))
        if len(champs) > 1:
            problems.append(f"{len(champs)} champions")
        for version, artifact, sha in champs:
            if artifact is None:
                problems.append(f"champion v{version} has no artifact")
            elif hashlib.sha256(bytes(artifact)).hexdigest() != sha:
                problems.append(f"champion v{version}: artifact does not match its sha256")
        # 5. the promotion log is a chain ending at the champion
        starts.append(len(problems))
        log = _all(cur, sql.SQL("SELECT from_version, to_version FROM {} WHERE pipeline = %s ORDER BY id").format(
            ident(reg, "promotion_log")), (spec.name,))
        prev = None
        for i, (frm, to) in enumerate(log):
            if frm != prev:
                problems.append(f"promotion log row {i + 1}: from v{frm} but the champion was v{prev}")
            if frm == to:
                problems.append(f"promotion log row {i + 1}: v{frm} → v{to} is not a change")
            prev = to
        current = champs[0][0] if champs else None
        if prev != current:
            problems.append(f"promotion log ends at v{prev} but the champion is v{current}")
        # 6. one retrain per drift window
        starts.append(len(problems))
        bad = _all(cur, sql.SQL("SELECT window_end, triggered_run_id FROM {} WHERE pipeline = %s AND "
                                "decision = 'retrain' AND triggered_run_id IS NOT NULL AND triggered_run_id <> "
                                "'drift__' || window_end::text").format(ident(mon, "drift_decisions")), (spec.name,))
        if bad:
            problems.append(f"retrain decisions without their window's run id: {bad}")
        # 7. one shadow version per date
        starts.append(len(problems))
        ss, st = spec.table("shadow_predictions")
        mixed = _all(cur, sql.SQL("SELECT as_of_date, array_agg(DISTINCT model_version ORDER BY model_version) "
                                  "FROM {} GROUP BY 1 HAVING count(DISTINCT model_version) > 1 LIMIT 5").format(
            ident(ss, st)))
        if mixed:
            problems.append(f"shadow predictions of several versions on one date: {mixed}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """``airtrain check``: every invariant of every pipeline with its result; exit 1 when one fails, 2 when
    the warehouse cannot be read (the error is printed without the password)."""

    ap = argparse.ArgumentParser(prog="airtrain check", description="check the warehouse invariants of every "
                                 "pipeline spec (docs/RELIABILITY.md) and print each with its result")
    ap.add_argument("--url", default=os.environ.get("WAREHOUSE_URL") or os.environ.get("AIRFLOW_CONN_WAREHOUSE"),
                    help="warehouse URL (default: $WAREHOUSE_URL, then $AIRFLOW_CONN_WAREHOUSE)")
    ap.add_argument("--spec-dir", default=None, help="folder of the pipeline specs (default: $AIRTRAIN_SPEC_DIR)")
    args = ap.parse_args(argv)
    if not args.url:
        print("error: pass --url or set WAREHOUSE_URL", file=sys.stderr)
        return 2
    wh = Warehouse(args.url)
    failed = 0
    scan = scan_specs(Path(args.spec_dir) if args.spec_dir else None)
    for err in scan.errors:  # one broken spec never hides the others' results
        print(f"error: invalid pipeline spec {err.path}: {redact_text('; '.join(err.problems))} (not checked)",
              file=sys.stderr)
    specs = scan.specs
    if not specs:
        if scan.errors:
            return 1
        print("no pipeline specs to check (none in the spec folder, or all excluded: $AIRTRAIN_EXCLUDE_PIPELINES)")
        return 0
    for spec in specs:
        try:
            checked = results(wh, spec)
        except psycopg2.Error as exc:
            print(f"{spec.name}: cannot check: {redact_text(str(exc)).strip()}", file=sys.stderr)
            return 2
        print(f"{spec.name}:")
        for i, (name, problems) in enumerate(checked, start=1):
            print(f"  {'ok  ' if not problems else 'FAIL'}  {i}. {name}")
            for p in problems:
                print(f"          - {p}")
            failed += bool(problems)
    print(f"{failed} invariant(s) failed" if failed else "all invariants hold")
    if scan.errors:
        print(f"error: {len(scan.errors)} spec(s) not loaded (named above): their pipelines were not checked",
              file=sys.stderr)
    return 1 if failed or scan.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
