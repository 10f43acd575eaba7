"""The Great Expectations 1.x adapter, wrapped once: the spec's rules as GX expectations (:func:`_rules`),
one ephemeral GX context per process (contexts are not thread-safe: every use holds a lock), and GX's
result read back failing closed (:func:`parse_gx_results`): a result shape this adapter does not
know fails the validation loudly, it never turns a ``block`` rule into a ``warn``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from airtrain.errors import PermanentError
from airtrain.spec import PipelineSpec
from airtrain.thirdparty import quiet_libraries

NULL_LABEL = "missing (null) but required"


@dataclass
class _Rule:
    expectation: Any
    severity: str  # quarantine | warn | block
    label: str
    column: str = ""


def _gx() -> Any:
    """``great_expectations``, imported quietly: no analytics, and none of the ~200 INFO lines
    ("Skipping registering function ...") GX logs while it is imported."""
    quiet_libraries()
    import great_expectations as gx

    return gx


def _rules(spec: PipelineSpec, partition_date: dt.date, present: set[str], extra_suites: list[Path]) -> list[_Rule]:
    gx = _gx()

    E = gx.expectations
    v = spec.validation
    rules: list[_Rule] = []
    key, date = spec.entity_key, spec.date_column
    if key in present:
        rules.append(_Rule(E.ExpectColumnValuesToNotBeNull(column=key), v.unique_key_on_fail, NULL_LABEL, key))
    if key in present and date in present:
        rules.append(_Rule(E.ExpectCompoundColumnsToBeUnique(column_list=[key, date]), v.unique_key_on_fail,
                           "duplicate key", key))
    if date in present:
        rules.append(_Rule(E.ExpectColumnValuesToNotBeNull(column=date), "quarantine", NULL_LABEL, date))
        rules.append(_Rule(E.ExpectColumnValuesToBeInSet(column=date, value_set=[partition_date]), "quarantine",
                           f"not the partition date {partition_date}", date))
    for f in spec.features:
        if f.name not in present:
            continue
        if not f.nullable and f.active_on(partition_date):  # outside since..until a NULL is accepted
            rules.append(_Rule(E.ExpectColumnValuesToNotBeNull(column=f.name), f.on_fail, NULL_LABEL, f.name))
        if f.min is not None or f.max is not None:
            rules.append(_Rule(E.ExpectColumnValuesToBeBetween(column=f.name, min_value=f.min, max_value=f.max),
                               f.on_fail, f"outside the allowed range {_num(f.min)}..{_num(f.max)}", f.name))
        if f.allowed:
            rules.append(_Rule(E.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.allowed)), f.on_fail,
                               f"not one of {list(f.allowed)}", f.name))
    rules += batch_rules(spec, extra_suites)
    return rules


def batch_rules(spec: PipelineSpec, extra_suites: list[Path]) -> list[_Rule]:
    """The batch-level rules: the row count and the user's suites (JSON lists of expectations), as GX
    expectations; in memory they close :func:`_rules`, in the warehouse they run on a SQL data source."""
    E = _gx().expectations
    v = spec.validation
    rules = [_Rule(E.ExpectTableRowCountToBeBetween(min_value=v.row_count.min, max_value=v.row_count.max),
                   v.row_count.on_fail, f"row count not between {v.row_count.min} and {v.row_count.max}")]
    for path in extra_suites:
        for item in json.loads(Path(path).read_text()):
            cls_name = "".join(p.capitalize() for p in item["type"].split("_"))
            cls = getattr(E, cls_name, None)
            if cls is None:
                raise ValueError(f"{path}: unknown expectation type {item['type']!r}")
            rules.append(_Rule(cls(**item.get("kwargs", {})), item.get("severity", "warn"),
                               item.get("description", item["type"]), item.get("kwargs", {}).get("column", "")))
    return rules


_GX_LOCK = threading.Lock()


_GX_BATCH_DEFINITION: Any = None


def _batch_definition() -> Any:
    """One ephemeral GX context per process, with a whole-DataFrame batch definition, built on first
    use and reused for every partition the process validates (a context per validated day cost a
    noticeable share of a range run). GX contexts are not safe to share between threads, so every
    use holds :data:`_GX_LOCK`; processes never share one (each Airflow task is its own process)."""
    global _GX_BATCH_DEFINITION
    if _GX_BATCH_DEFINITION is None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("airtrain").add_dataframe_asset("partition")
        _GX_BATCH_DEFINITION = asset.add_batch_definition_whole_dataframe("whole")
    return _GX_BATCH_DEFINITION


def _run_gx(typed: pd.DataFrame, rules: list[_Rule]) -> list[dict[str, Any]]:
    return parse_gx_results(gx_validate(typed, rules), rules, typed)


def gx_validate(typed: pd.DataFrame, rules: list[_Rule]) -> list[Any]:
    """GX's raw ``ExpectationValidationResult`` list for ``rules`` on ``typed`` (each expectation
    tagged with its rule's index in ``meta``)."""
    with _GX_LOCK:
        return _gx_validate_locked(typed, rules)


def _gx_validate_locked(typed: pd.DataFrame, rules: list[_Rule]) -> list[Any]:
    gx = _gx()

    batch = _batch_definition().get_batch(batch_parameters={"dataframe": typed})
    suite = gx.ExpectationSuite(name="airtrain_generated")
    for i, r in enumerate(rules):  # expectation ids are None outside a stored suite: tag via meta
        r.expectation.meta = {**(r.expectation.meta or {}), "airtrain_rule": i}
        suite.add_expectation(r.expectation)
    res = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                               "unexpected_index_column_names": ["_row_number"],
                                               "return_unexpected_index_query": False})
    return list(res.results)


class ValidationResultError(PermanentError, RuntimeError):
    """GX's result does not hold what the adapter asked for (its result shape changed?)."""


def parse_gx_results(results: list[Any], rules: list[_Rule], typed: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Our rows from GX's ``ExpectationValidationResult`` list, failing closed.

    Every result must carry the ``airtrain_rule`` tag in its expectation's ``meta`` (the only link
    to the rule's severity), and every rule must have exactly one result. Anything else raises
    :class:`ValidationResultError`: a GX upgrade that drops ``meta`` or a result must fail the
    validation loudly, never turn a ``block`` rule into a ``warn``."""
    out: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    problems = []
    for er in results:
        cfg = getattr(er, "expectation_config", None)
        meta = getattr(cfg, "meta", None) or {}
        tag = meta.get("airtrain_rule") if isinstance(meta, dict) else None
        if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag < len(rules):
            problems.append(f"a {getattr(cfg, 'type', '?')} result has no valid airtrain_rule tag in its "
                            f"expectation's meta ({meta!r})")
            continue
        seen[tag] = seen.get(tag, 0) + 1
        rule = rules[tag]
        result = er.result or {}
        rows = []
        for item in result.get("unexpected_index_list") or []:
            if isinstance(item, dict):
                rows.append(int(item["_row_number"]))
            elif typed is not None:
                rows.append(int(typed["_row_number"].iloc[item]))
            else:
                problems.append(f"a {cfg.type} result lists a row by position, not by _row_number")
        out.append({"expectation": cfg.type, "column": rule.column, "label": rule.label, "severity": rule.severity,
                    "success": bool(er.success), "unexpected_count": int(result.get("unexpected_count") or len(rows)),
                    "unexpected_percent": float(result.get("unexpected_percent") or 0.0),
                    "observed_value": _plain(result.get("observed_value")), "_rows": rows,
                    "exception": (er.exception_info or {}).get("exception_message")
                    if isinstance(er.exception_info, dict) and er.exception_info.get("raised_exception") else None})
    for i, r in enumerate(rules):
        if seen.get(i, 0) != 1:
            problems.append(f"{seen.get(i, 0)} results for rule {i} ({type(r.expectation).__name__} "
                            f"{r.column or 'table'}: {r.label}; expected exactly 1)")
    if problems:
        raise ValidationResultError("the Great Expectations result does not match the expectations that were "
                                    "run, so the batch is not judged (check the installed great_expectations "
                                    "version against requirements.txt):\n  - " + "\n  - ".join(problems))
    return out


def _num(v: float | None) -> str:
    return "" if v is None else (str(int(v)) if float(v).is_integer() else str(v))


def _plain(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)
