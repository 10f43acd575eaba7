"""Validation in the warehouse: the spec's per-row rules compiled to SQL and applied to the raw partition
server-side, so no row of the day passes through Python (issue 22).

One transaction per date, under the partition's advisory lock:

1. A temporary table holds the partition typed by SQL expressions (the casts of
   :mod:`airtrain.data.validation`: blank is null, ``'abc'`` in a float column, ``'nan'``, ``'inf'``, a
   fraction in an int column, an unknown bool or label spelling, a date not in ``date_format`` are type
   failures) with each row's reasons: the type failures, then every failing ``quarantine`` rule in the
   order the GX adapter generates them (not-null, duplicate key, the partition date, ranges, allowed
   values), with the SAME texts (``"<column>: <label>"``, ``"<column>: '<value>' is not a valid <type>"``).
   The casts are nested subqueries (each expression once per row, one scan); the common values take
   fast paths without a regular expression (digits, ``digits.digits``, the partition's own date as the
   format writes it); duplicate keys come from a narrow pass over the typed key and date only.
2. One aggregate query counts every rule's failures (what ``warn`` and ``block`` rules and the report
   need).
3. Batch-level expectations run in Great Expectations 1.x on a SQL data source over the partition (a
   query asset of the typed partition, GX's SQL execution engine): the row count and the user's extra
   suites; their results are GX's. Freshness, missing columns and the quarantine share are judged as
   the in-memory validation judges them (same messages).
4. ``INSERT … SELECT``: failing rows into the quarantine with their reasons and the row as received,
   the valid rows into the features table (unless the batch is blocked), the labels the batch carried,
   and the record in ``monitoring.validation_runs`` - the same rules as :func:`store_validation` (a
   blocked re-run of a date that passed keeps the validation in force).

:func:`airtrain.data.validation.validate_batch` stays the reference on small in-memory frames; a test
runs the bad-batch kinds through both and compares the outcome row by row.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from psycopg2 import sql

from airtrain.data.gx import (
    _GX_LOCK,
    NULL_LABEL,
    ValidationResultError,
    _gx,
    _num,
    _Rule,
    batch_rules,
    parse_gx_results,
)
from airtrain.data.ingest import expected_columns
from airtrain.data.labels import store_batch_labels_sql
from airtrain.data.quarantine import record_validation
from airtrain.data.validation import Judged, _extra_columns_of, missing_column_message, render_html
from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.spec import BOOL_SPELLINGS, PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, xact_lock
from airtrain.warehouse.redaction import redact_text

#: what Python's str.strip() removes (so a value is blank, or trimmed, exactly as in the in-memory casts)
_WS = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace() and ch != "\x00")
_NUM_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"
_TRUE = [k for k, v in BOOL_SPELLINGS.items() if v]
_FALSE = [k for k, v in BOOL_SPELLINGS.items() if not v]
_DATE_TOKENS = {"Y": r"([0-9]{4})", "y": r"([0-9]{2})", "m": r"([0-9]{1,2})", "d": r"([0-9]{1,2})",
                "H": r"([0-9]{1,2})", "M": r"([0-9]{1,2})", "S": r"([0-9]{1,2})", "f": r"([0-9]{1,6})"}


class DateFormatError(PermanentError, ValueError):
    """``date_format`` uses a strptime directive the in-warehouse casts do not read."""


@dataclass
class WarehouseOutcome(Judged):
    """A partition validated in the warehouse: counts and results (its rows stay in the warehouse).
    ``quarantine`` holds the first quarantined rows (for the report), not all of them."""

    partition_date: dt.date
    rows_total: int
    rows_valid: int
    rows_quarantined: int
    rows_labeled: int
    blocked: bool
    block_reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    quarantine: Any = None
    html_report: str = ""


# --------------------------------------------------------------------------------------------
# SQL expressions
# --------------------------------------------------------------------------------------------

def _lit(v: Any) -> sql.Composable:
    return sql.Literal(v)


def _pyrepr(v: sql.Composable) -> sql.Composable:
    """Python's ``repr`` of a text value, in SQL (quotes, backslash, newline, CR and tab escaped)."""
    esc = sql.SQL("replace(replace(replace(replace({v}, '\\', '\\\\'), E'\\n', '\\n'), E'\\r', '\\r'), "
                  "E'\\t', '\\t')").format(v=v)
    return sql.SQL("CASE WHEN strpos({v}, '''') > 0 AND strpos({v}, '\"') = 0 THEN '\"' || {e} || '\"' "
                   "ELSE '''' || replace({e}, '''', '\\''') || '''' END").format(v=v, e=esc)


def _date_parts(fmt: str) -> tuple[str, list[str]]:
    """(anchored regex, the directive of each group) of a strptime format."""
    out, groups, i = ["^"], [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            tok = fmt[i + 1]
            i += 2
            if tok == "%":
                out.append("%")
            elif tok in _DATE_TOKENS:
                out.append(_DATE_TOKENS[tok])
                groups.append(tok)
            else:
                raise DateFormatError(f"date_format {fmt!r}: the directive %{tok} is not read by the in-warehouse "
                                      f"validation (it reads %Y %y %m %d %H %M %S %f)")
            continue
        out.append(re.escape(ch) if not ch.isalnum() else ch)
        i += 1
    return "".join(out) + "$", groups


def _typed(kind: str, t: sql.Composable, p: sql.Composable, spec: PipelineSpec, day: dt.date | None = None
           ) -> tuple[sql.Composable | None, sql.Composable]:
    """(the parse of the trimmed, blank-is-null text ``t`` - a number, the date's parts - or None, the typed
    value from that parse ``p``). The parse runs once per value (its own query level): the value
    expression refers to it several times. A value failed to cast when ``t`` is not null but the
    typed value is."""
    if kind in ("int", "float"):
        # fast path without the regex: digits, or digits with one '.' between them (what most values are)
        prep = sql.SQL("CASE WHEN btrim({t}, '0123456789') IN ('', '.') AND {t} <> '.' THEN {t}::numeric "
                       "WHEN {t} ~ {re} THEN {t}::numeric END").format(t=t, re=_lit(_NUM_RE))
        if kind == "int":
            return prep, sql.SQL("CASE WHEN abs({n}) < 9223372036854775808 AND {n} = trunc({n}) THEN {n}::bigint END"
                                 ).format(n=p)
        return prep, sql.SQL("CASE WHEN abs({n}) <= 1.7976931348623157e308 THEN (CASE WHEN abs({n}) < 2.3e-308 "
                             "THEN 0 ELSE {n} END)::float8 END").format(n=p)
    if kind == "bool":
        return None, sql.SQL("CASE WHEN lower({t}) = ANY({tr}) THEN true WHEN lower({t}) = ANY({fa}) THEN false END"
                             ).format(t=t, tr=_lit(_TRUE), fa=_lit(_FALSE))
    if kind == "label":
        target = spec.target
        if target.positive:
            neg = (sql.SQL("WHEN {t} = ANY({n}) THEN 0").format(t=t, n=_lit(list(target.negative)))
                   if target.negative else sql.SQL("WHEN {t} IS NOT NULL THEN 0").format(t=t))
            value = sql.SQL("CASE WHEN {t} = ANY({p}) THEN 1 {neg} END").format(
                t=t, p=_lit(list(target.positive)), neg=neg)
        else:
            value = sql.SQL("CASE WHEN lower({t}) = ANY({tr}) THEN 1 WHEN lower({t}) = ANY({fa}) THEN 0 END"
                            ).format(t=t, tr=_lit(_TRUE), fa=_lit(_FALSE))
        return None, sql.SQL("({})::smallint").format(value)
    if kind == "date":
        fmt = spec.date_format or "%Y-%m-%d"
        regex, groups = _date_parts(fmt)
        literals = "".join(dict.fromkeys(re.sub(r"%.", "", fmt) + ("%" if "%%" in fmt else "")))
        if re.search(r"%[^%](?=%[^%])", fmt) or any(ch.isdigit() for ch in literals) or not literals:
            # directives side by side (%Y%m%d): only a capturing regex splits them (slower, ~100 µs a value)
            prep = sql.SQL("regexp_match({t}, {re})::int[]").format(t=t, re=_lit(regex))
        else:
            # match without capturing (fast), then split on the format's literal characters: the digit
            # groups are the directives' values, in order
            prep = sql.SQL("CASE WHEN {t} ~ {re} THEN array_remove(string_to_array(translate({t}, {lits}, {commas}), "
                           "','), '')::int[] END").format(t=t, re=_lit(regex.replace("(", "(?:")),
                                                          lits=_lit(literals), commas=_lit("," * len(literals)))

        def part(tok: str) -> sql.Composable:
            return sql.SQL("{m}[{i}]").format(m=p, i=sql.Literal(groups.index(tok) + 1))

        year = part("Y") if "Y" in groups else sql.SQL("(CASE WHEN {y} < 69 THEN 2000 ELSE 1900 END + {y})").format(
            y=part("y"))
        checks = [sql.SQL("{y} BETWEEN 1 AND 9999").format(y=year),
                  sql.SQL("{mo} BETWEEN 1 AND 12").format(mo=part("m"))]
        checks += [sql.SQL("{} < {}").format(part(tok), sql.Literal(limit))
                   for tok, limit in (("H", 24), ("M", 60), ("S", 62)) if tok in groups]
        # nested CASEs: make_date never sees a month or a year out of range
        if day is not None and "y" not in groups:  # fast path: the partition's date as the format writes it
            same = _lit(day.strftime(fmt))
            prep = sql.SQL("CASE WHEN {t} = {same} THEN NULL ELSE {prep} END").format(t=t, same=same, prep=prep)
            return prep, sql.SQL(
                "CASE WHEN {t} = {same} THEN {day}::date WHEN {m} IS NOT NULL THEN (CASE WHEN {c} THEN (CASE WHEN {d} "
                "BETWEEN 1 AND extract(day FROM make_date({y}, {mo}, 1) + interval '1 month - 1 day') THEN "
                "make_date({y}, {mo}, {d}) END) END) END"
            ).format(t=t, same=same, day=_lit(day), m=p, c=sql.SQL(" AND ").join(checks), d=part("d"), y=year,
                     mo=part("m"))
        return prep, sql.SQL(
            "CASE WHEN {m} IS NOT NULL THEN (CASE WHEN {c} THEN (CASE WHEN {d} BETWEEN 1 AND extract(day FROM "
            "make_date({y}, {mo}, 1) + interval '1 month - 1 day') THEN make_date({y}, {mo}, {d}) END) END) END"
        ).format(m=p, c=sql.SQL(" AND ").join(checks), d=part("d"), y=year, mo=part("m"))
    return None, t


def _kinds(spec: PipelineSpec) -> dict[str, str]:
    kinds = {spec.entity_key: "int" if spec.entity_key_type == "int" else "text", spec.date_column: "date",
             **{f.name: {"category": "text"}.get(f.type, f.type) for f in spec.features}}
    kinds[spec.target.name] = "label" if spec.target.task == "binary_classification" else "float"
    return kinds


def _what(spec: PipelineSpec, kind: str) -> str:
    return (f"label ({spec.target.label_values()})" if kind == "label" else
            f"date ({spec.date_format or '%Y-%m-%d'})" if kind == "date" else kind)


@dataclass
class _SqlRule:
    expectation: str
    column: str
    label: str
    severity: str
    fails: sql.Composable  # on the typed columns of the temporary table
    denominator: str = "nonnull"  # what GX's unexpected_percent divides by: nonnull | total | pair


def _row_rules(spec: PipelineSpec, d: dt.date, present: set[str]) -> list[_SqlRule]:
    """The per-row rules of :func:`airtrain.data.gx._rules`, in the same order, as SQL conditions."""
    v = spec.validation
    key, date = spec.entity_key, spec.date_column
    c = ident
    rules = []
    if key in present:
        rules.append(_SqlRule("expect_column_values_to_not_be_null", key, NULL_LABEL, v.unique_key_on_fail,
                              sql.SQL("{} IS NULL").format(c(key)), "total"))
    if key in present and date in present:
        rules.append(_SqlRule("expect_compound_columns_to_be_unique", key, "duplicate key", v.unique_key_on_fail,
                              sql.SQL("(_dup > 1 AND NOT ({} IS NULL AND {} IS NULL))").format(c(key), c(date)),
                              "pair"))
    if date in present:
        rules.append(_SqlRule("expect_column_values_to_not_be_null", date, NULL_LABEL, "quarantine",
                              sql.SQL("{} IS NULL").format(c(date)), "total"))
        rules.append(_SqlRule("expect_column_values_to_be_in_set", date, f"not the partition date {d}", "quarantine",
                              sql.SQL("({0} IS NOT NULL AND {0} <> {1}::date)").format(c(date), _lit(d))))
    for f in spec.features:
        if f.name not in present:
            continue
        if not f.nullable and f.active_on(d):
            rules.append(_SqlRule("expect_column_values_to_not_be_null", f.name, NULL_LABEL, f.on_fail,
                                  sql.SQL("{} IS NULL").format(c(f.name)), "total"))
        if f.min is not None or f.max is not None:
            bounds = ([sql.SQL("{} < {}").format(c(f.name), _lit(float(f.min)))] if f.min is not None else []) + \
                     ([sql.SQL("{} > {}").format(c(f.name), _lit(float(f.max)))] if f.max is not None else [])
            rules.append(_SqlRule("expect_column_values_to_be_between", f.name,
                                  f"outside the allowed range {_num(f.min)}..{_num(f.max)}", f.on_fail,
                                  sql.SQL("({} IS NOT NULL AND ({}))").format(c(f.name), sql.SQL(" OR ").join(bounds))))
        if f.allowed:
            rules.append(_SqlRule("expect_column_values_to_be_in_set", f.name, f"not one of {list(f.allowed)}",
                                  f.on_fail, sql.SQL("({0} IS NOT NULL AND {0} <> ALL({1}))").format(
                                      c(f.name), _lit(list(f.allowed)))))
    return rules


# --------------------------------------------------------------------------------------------
# Great Expectations on a SQL data source (batch-level expectations)
# --------------------------------------------------------------------------------------------

_GX_SOURCES: dict[str, Any] = {}


def _gx_sql(wh: Warehouse, query: str, rules: list[_Rule]) -> list[Any]:
    """GX's results of ``rules`` on a query asset over the partition (GX's SQL execution engine).
    Rules that quarantine rows get their failing ``_row_number`` values (COMPLETE result format); the
    others only counts (SUMMARY), so a failing warn rule never brings the day's rows into Python."""
    if not rules:
        return []
    with _GX_LOCK:
        gx = _gx()
        source = _GX_SOURCES.get(wh.uri)
        if source is None:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            url = wh.uri.replace("postgresql://", "postgresql+psycopg2://", 1)
            source = _GX_SOURCES[wh.uri] = context.data_sources.add_postgres("warehouse", connection_string=url)
        name = f"partition_{uuid.uuid4().hex}"
        asset = source.add_query_asset(name, query=query)
        try:
            batch = asset.add_batch_definition_whole_table("whole").get_batch()
            out: list[Any] = []
            for complete in (True, False):
                chosen = [(i, r) for i, r in enumerate(rules) if (r.severity == "quarantine") == complete]
                if not chosen:
                    continue
                suite = gx.ExpectationSuite(name=f"airtrain_{'rows' if complete else 'batch'}")
                for i, r in chosen:
                    r.expectation.meta = {**(r.expectation.meta or {}), "airtrain_rule": i}
                    suite.add_expectation(r.expectation)
                # GX's SQL engine lists at most partial_unexpected_count failing rows (default 20)
                fmt = ({"result_format": "COMPLETE", "unexpected_index_column_names": ["_row_number"],
                        "partial_unexpected_count": 2**31 - 1, "return_unexpected_index_query": False}
                       if complete else {"result_format": "SUMMARY"})
                out += list(batch.validate(suite, result_format=fmt).results)
            return out
        finally:
            source.delete_asset(name)
            # no connection outlives the validation: GX's engines pool them (the datasource's and its
            # execution engine's); a pooled idle backend per worker process would count against
            # max_connections and hold the warehouse's catalog snapshot open
            for close in (lambda: source.get_execution_engine().close(), lambda: source.get_engine().dispose()):
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing is best effort; the result above stands
                    pass


# --------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------

def validate_partition(wh: Warehouse, spec: PipelineSpec, d: dt.date, run_id: str, *, today: dt.date,
                       extra_suites: list[str | Path] | None = None,
                       save_report: Any = None) -> tuple[WarehouseOutcome, dict[str, Any] | None, str]:
    """Validate the raw partition ``d`` in the warehouse and store the outcome (see the module
    docstring). ``save_report(report_id, html) -> location`` stores the HTML report (called inside the
    transaction, before the record that names it). Returns (outcome, the validation kept in force
    when a blocked re-run of a passed date changed nothing, report id)."""
    rs, rt = spec.table("raw")
    raw = ident(rs, rt)
    kinds = _kinds(spec)
    t = spec.target
    inactive = {f.name for f in spec.features if not f.active_on(d)}
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "partition", spec.name, d.isoformat())
        cur.execute(sql.SQL("SELECT columns_missing FROM {} WHERE pipeline = %s AND partition_date = %s").format(
            ident(spec.warehouse.monitoring_schema, "ingest_runs")), (spec.name, d))
        row = cur.fetchone()
        ingest_missing = [c for c in (list(row[0]) if row else []) if c in kinds]
        absent = set()
        for col in ingest_missing:  # absent when it never arrived: all null in the partition
            cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {} WHERE _partition_date = %s AND {} IS NOT NULL)"
                                ).format(raw, ident(col)), (d,))
            if cur.fetchone()[0]:
                absent.add(col)
        missing = [c for c in kinds if c in absent and not (c == t.name and not spec.labels_from_batch)
                   and c not in inactive]
        present = {c for c in kinds if c not in absent or c in inactive}
        cur.execute(sql.SQL("SELECT s._extra FROM (SELECT _extra FROM {} WHERE _partition_date = %s AND _extra IS NOT "
                            "NULL ORDER BY _row_number LIMIT 1000) s").format(raw), (d,))
        extra = _extra_columns_of(r[0] for r in cur.fetchall())

        # 1. the typed partition, with each row's reasons: trimmed text (t), its parse (p), the typed value
        # (v), each level a subquery of the one before (OFFSET 0 keeps PostgreSQL from pulling it up and
        # so repeating its expressions in the next level): every expression is computed once per row, in
        # one scan, with no per-row subplan (LATERAL levels were nested loops with a memoize node each)
        def at(level: str, i: int) -> sql.Composable:
            return sql.SQL("x.{}").format(sql.Identifier(f"_airtrain_{level}{i}"))

        def typed_rows(only: set[str] | None = None) -> sql.Composable:
            """The typed partition (``only``: just those columns, without the reasons)."""
            trims, preps, values, typed, type_reasons = [], [], [], [], []
            for i, (col, kind) in enumerate(kinds.items()):
                if col not in present or (only is not None and col not in only):
                    continue
                if col in inactive and col in absent:
                    typed.append(sql.SQL("NULL::{} AS {}").format(sql.SQL(_sql_type(kind)), ident(col)))
                    continue
                tref = at("t", i)
                trims.append(sql.SQL("NULLIF(btrim(x.{}, {}), '') AS {}").format(ident(col), _lit(_WS),
                                                                                 sql.Identifier(f"_airtrain_t{i}")))
                prep, value = _typed(kind, tref, at("p", i), spec, d)
                if prep is not None:
                    preps.append(sql.SQL("{} AS {}").format(prep, sql.Identifier(f"_airtrain_p{i}")))
                if kind == "text":
                    typed.append(sql.SQL("{} AS {}").format(tref, ident(col)))
                    continue
                vref = at("v", i)
                values.append(sql.SQL("{} AS {}").format(value, sql.Identifier(f"_airtrain_v{i}")))
                typed.append(sql.SQL("{} AS {}").format(vref, ident(col)))
                type_reasons.append(sql.SQL("CASE WHEN {t} IS NOT NULL AND {v} IS NULL THEN {c} || {rp} || {w} END"
                                            ).format(t=tref, v=vref, c=_lit(f"{col}: "),
                                                     rp=_pyrepr(sql.SQL("x.{}").format(ident(col))),
                                                     w=_lit(f" is not a valid {_what(spec, kind)}")))
            treasons = (sql.SQL("array_remove(ARRAY[{}]::text[], NULL)").format(sql.SQL(", ").join(type_reasons))
                        if type_reasons else sql.SQL("'{}'::text[]"))
            levels = sql.SQL("(SELECT x.* FROM {raw} x WHERE x._partition_date = {d} OFFSET 0) x").format(
                raw=raw, d=_lit(d))
            for items in (trims, preps, values):
                if items:
                    levels = sql.SQL("(SELECT x.*, {} FROM {} OFFSET 0) x").format(sql.SQL(", ").join(items), levels)
            return sql.SQL("SELECT x._row_number, {typed}{treasons} FROM {levels}").format(
                typed=sql.SQL(", ").join(typed), levels=levels,
                treasons=sql.SQL("") if only is not None else sql.SQL(", {} AS _type_reasons").format(treasons))

        typed_query = typed_rows()
        # GX reads the partition on its own connection: the typed rows only when a user suite needs them
        gx_query = typed_query if extra_suites else sql.SQL(
            "SELECT _row_number FROM {} WHERE _partition_date = {}").format(raw, _lit(d))
        rules = _row_rules(spec, d, present)
        key, date = spec.entity_key, spec.date_column

        # 3. (first: GX reads the committed raw partition on its own connection) batch-level expectations
        try:
            checks = batch_rules(spec, [Path(p) for p in extra_suites or []])
            gx_results = parse_gx_results(_gx_sql(wh, gx_query.as_string(cur), checks), checks, None)
        except PermanentError:
            raise
        except Exception as exc:  # noqa: BLE001 - GX and SQLAlchemy raise many types; never print the URL
            raise ValidationEngineError(f"Great Expectations could not validate {spec.name} {d} on the warehouse: "
                                        f"{redact_text(str(exc))[:2000]}") from None
        suite_rows: list[tuple[str, list[int]]] = []
        for r in gx_results:
            if r["severity"] == "quarantine" and not r["success"] and r["_rows"]:
                if len(set(r["_rows"])) != r["unexpected_count"]:  # fail closed: never quarantine a part
                    raise ValidationResultError(
                        f"Great Expectations listed {len(set(r['_rows']))} failing rows of {r['unexpected_count']} "
                        f"for '{r['label']}'; the batch is not judged")
                suite_rows.append((f"{r['column']}: {r['label']}", r["_rows"]))

        quarantine_rules = [r for r in rules if r.severity == "quarantine"]
        rule_reasons = []
        for r in quarantine_rules:
            cond = r.fails if r.label != NULL_LABEL else sql.SQL("({} AND cardinality(_type_reasons) = 0)").format(
                r.fails)
            rule_reasons.append(sql.SQL("CASE WHEN {} THEN {} END").format(cond, _lit(f"{r.column}: {r.label}")))
        for text, rows in suite_rows:
            rule_reasons.append(sql.SQL("CASE WHEN _row_number = ANY({}::int[]) THEN {} END").format(
                _lit(rows), _lit(text)))
        reasons = (sql.SQL("_type_reasons || array_remove(ARRAY[{}]::text[], NULL)").format(
            sql.SQL(", ").join(rule_reasons)) if rule_reasons else sql.SQL("_type_reasons"))
        # the duplicate keys first, from a narrow pass (the typed key and date only: a sort of a few bytes
        # a row), then the typed rows with their reasons in one scan
        has_pair = key in present and date in present
        cur.execute("DROP TABLE IF EXISTS pg_temp._airtrain_dups; DROP TABLE IF EXISTS pg_temp._airtrain_validated")
        if has_pair:
            cur.execute(sql.SQL(
                "CREATE TEMP TABLE _airtrain_dups ON COMMIT DROP AS SELECT _row_number, _dup FROM (SELECT _row_number, "
                "count(*) OVER (PARTITION BY {}, {}) AS _dup FROM ({}) k) w WHERE _dup > 1").format(
                    ident(key), ident(date), typed_rows({key, date})))
            cur.execute("ANALYZE _airtrain_dups")
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE _airtrain_validated ON COMMIT DROP AS SELECT s.*, {reasons} AS _reasons FROM "
            "(SELECT x.*, {dupcol} AS _dup FROM ({typed}) x {dup}) s").format(
            reasons=reasons, typed=typed_query,
            dupcol=sql.SQL("coalesce(d._dup, 1)") if has_pair else sql.SQL("1"),
            dup=sql.SQL("LEFT JOIN _airtrain_dups d USING (_row_number)") if has_pair else sql.SQL("")))

        # 2. every rule's failures, the totals
        label_col = t.name if t.name in present else None
        aggs = [sql.SQL("count(*)"), sql.SQL("count(*) FILTER (WHERE cardinality(_reasons) > 0)"),
                sql.SQL("count(*) FILTER (WHERE cardinality(_reasons) = 0 AND {} IS NOT NULL)").format(
                    ident(label_col)) if label_col else sql.SQL("0")]
        for r in rules:
            aggs.append(sql.SQL("count(*) FILTER (WHERE {})").format(r.fails))
            aggs.append(sql.SQL("count({})").format(ident(r.column)) if r.denominator == "nonnull" else
                        sql.SQL("count(*) FILTER (WHERE NOT ({} IS NULL AND {} IS NULL))").format(
                            ident(key), ident(date)) if r.denominator == "pair" else sql.SQL("count(*)"))
        cur.execute(sql.SQL("SELECT {} FROM _airtrain_validated").format(sql.SQL(", ").join(aggs)))
        stats = cur.fetchone()
        total, quarantined, labeled = int(stats[0]), int(stats[1]), int(stats[2])

        # the judgement, as validate_batch makes it
        block, warnings, results = [], [], []
        for col in missing:
            block.append(missing_column_message(spec, col, extra))
            results.append({"expectation": "expect_table_columns_to_include", "column": col, "label":
                            "missing column", "severity": "block", "success": False, "unexpected_count": 0,
                            "unexpected_percent": 0.0, "observed_value": None})
        if extra:
            warnings.append(f"the batch has columns the spec does not know: {', '.join(extra)} (kept as received "
                            "in the raw table's _extra column, not used; add them to the spec to use them)")
            results.append({"expectation": "expect_table_columns_to_match_set", "column": "", "label":
                            "no unknown columns", "severity": "warn", "success": False, "unexpected_count":
                            len(extra), "unexpected_percent": 0.0, "observed_value": ", ".join(extra)})
        fr = spec.validation.freshness
        age = (today - d).days
        results.append({"expectation": "freshness", "column": spec.date_column, "label":
                        f"partition at most {fr.max_age_days} days old", "severity": fr.on_fail, "success":
                        age <= fr.max_age_days, "unexpected_count": 0, "unexpected_percent": 0.0,
                        "observed_value": f"{age} days"})
        if age > fr.max_age_days:
            msg = f"partition {d} is {age} days old on {today} (limit {fr.max_age_days})"
            (block if fr.on_fail == "block" else warnings).append(msg)
        row_results = []
        for i, r in enumerate(rules):
            n, den = int(stats[3 + 2 * i]), int(stats[4 + 2 * i])
            row_results.append({"expectation": r.expectation, "column": r.column, "label": r.label,
                                "severity": r.severity, "success": n == 0, "unexpected_count": n,
                                "unexpected_percent": 100.0 * n / den if den else 0.0, "observed_value": None,
                                "_rows": n > 0, "exception": None})
        for r in row_results + gx_results:
            rows = r.pop("_rows")
            results.append(r)
            if r["success"]:
                continue
            what = f"{r['column'] + ': ' if r['column'] else ''}{r['label']} ({r['unexpected_count']} rows)"
            if r.get("exception"):
                block.append(f"expectation {r['expectation']} could not run: {r['exception']}")
            elif r["severity"] == "quarantine" and rows:
                continue  # the rows carry the reason (the SQL above)
            elif r["severity"] == "block" or r["severity"] == "quarantine":
                block.append(f"{what} — a blocking rule" if r["severity"] == "block" else what)
            else:
                warnings.append(what)
        limit = spec.validation.max_quarantine_fraction
        if total and quarantined / total > limit:
            block.append(f"{quarantined / total:.1%} of rows failed validation ({quarantined} of {total}; "
                         f"the limit is {limit:.0%}): see the quarantine table")
        blocked = bool(block)
        rows_valid = total - quarantined
        outcome = WarehouseOutcome(d, total, rows_valid, quarantined, labeled if label_col else 0, blocked, block,
                                   warnings, results)

        # the first quarantined rows, for the report
        row_data = _row_data(expected_columns(spec))
        cur.execute(sql.SQL("SELECT v._row_number, v._reasons, {rd} FROM _airtrain_validated v JOIN {raw} r ON "
                            "r._partition_date = %s AND r._row_number = v._row_number WHERE cardinality(v._reasons) "
                            "> 0 ORDER BY v._row_number LIMIT 50").format(rd=row_data, raw=raw), (d,))
        outcome.quarantine = pd.DataFrame.from_records(cur.fetchall(), columns=["_row_number", "reasons", "row_data"])
        outcome.html_report = render_html(spec, outcome, run_id)

        # 4. the writes (store_validation's rules)
        runs = ident(spec.warehouse.monitoring_schema, "validation_runs")
        kept = None
        cur.execute(sql.SQL("SELECT run_id, rows_valid, rows_quarantined FROM {} WHERE pipeline = %s AND "
                            "partition_date = %s AND NOT blocked").format(runs), (spec.name, d))
        before = cur.fetchone()
        passed = before is not None
        report_id = f"{d.isoformat()}.blocked" if blocked and passed else d.isoformat()
        location = save_report(report_id, outcome.html_report) if save_report is not None else ""
        if blocked and before is not None:
            attempt = {"run_id": run_id, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       "rows_total": total, "rows_valid": rows_valid, "rows_quarantined": quarantined,
                       "block_reasons": block, "report_path": location}
            cur.execute(sql.SQL("UPDATE {} SET blocked_attempt = %s WHERE pipeline = %s AND partition_date = %s"
                                ).format(runs), (json.dumps(attempt, default=str), spec.name, d))
            kept = {"run_id": before[0], "rows_valid": before[1], "rows_quarantined": before[2]}
        else:
            qs, qt = spec.table("quarantine")
            cur.execute(sql.SQL("DELETE FROM {} WHERE _partition_date = %s").format(ident(qs, qt)), (d,))
            cur.execute(sql.SQL(
                "INSERT INTO {q} (_partition_date, _row_number, _run_id, reasons, row_data) SELECT %s, v._row_number, "
                "%s, v._reasons, {rd} FROM _airtrain_validated v JOIN {raw} r ON r._partition_date = %s AND "
                "r._row_number = v._row_number WHERE cardinality(v._reasons) > 0").format(
                q=ident(qs, qt), rd=row_data, raw=raw), (d, run_id, d))
            if not blocked:
                fs, ft = spec.table("features")
                fcols = [spec.entity_key, spec.date_column, *spec.feature_names]
                cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(ident(fs, ft), ident(spec.date_column)),
                            (d,))
                cur.execute(sql.SQL("INSERT INTO {} ({}, _run_id) SELECT {}, %s FROM _airtrain_validated WHERE "
                                    "cardinality(_reasons) = 0").format(
                    ident(fs, ft), sql.SQL(", ").join(map(ident, fcols)),
                    sql.SQL(", ").join(ident(c) if c in present else sql.SQL("NULL") for c in fcols)), (run_id,))
                store_batch_labels_sql(cur, spec, d, "_airtrain_validated", "cardinality(_reasons) = 0",
                                       label_col is not None)
            record_validation(cur, spec, d, run_id, outcome, location)
        failpoint("validate.before_commit")
    failpoint("validate.after_commit")
    return outcome, kept, report_id


class ValidationEngineError(PermanentError, RuntimeError):
    """Great Expectations could not run on the warehouse (its message redacted)."""


def _row_data(cols: list[str]) -> sql.Composable:
    """The quarantined row as received: its raw columns and ``_extra`` (jsonb; built in parts of 40 keys,
    PostgreSQL functions take at most 100 arguments)."""
    names = [*cols, "_extra"]
    parts = [sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, r.{}").format(_lit(c), ident(c)) for c in names[i:i + 40])) for i in range(0, len(names), 40)]
    return sql.SQL(" || ").join(parts)


def _sql_type(kind: str) -> str:
    return {"int": "bigint", "float": "float8", "bool": "boolean", "label": "smallint", "date": "date"}.get(kind,
                                                                                                         "text")
