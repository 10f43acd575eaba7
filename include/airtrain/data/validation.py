"""Validate a raw partition with Great Expectations 1.x; split it into valid rows and quarantine.

The daily step validates in the warehouse (:mod:`airtrain.data.inwarehouse`: these rules compiled to
SQL, the same reasons); this in-memory version is the reference on small frames (a test compares the
two row by row) and what the pure unit tests exercise.

``validate_batch(raw, spec, partition_date, run_id)`` is pure (no database I/O):

1. **Typing.** The raw partition arrives as text. Blank and whitespace-only values are null. Each
   expected column is cast to its spec type; a value that does not cast (``'abc'`` in a float
   column, ``'nan'``/``'inf'``, ``'twelve'`` in an int column, ``'maybe'`` in a bool column, a date that
   is not ISO) is a row failure ``type``. The target, when the batch carries it, is cast the same
   way (a binary target through ``target.positive``/``negative`` or the bool spellings); a null
   target just means "no label yet".
2. **Expectations generated from the spec**, run by GX on the typed frame in an *ephemeral* context
   (one per process, reused under a lock: GX contexts are not safe to share across threads):
   not-null (non-nullable features, key, date), between min/max, in-set for categories, compound
   uniqueness of (key, date), date column equals the partition, row count between bounds, plus
   optional hand-written suites. Missing columns and freshness are batch-level checks.
3. **Severity per rule** (spec): ``quarantine`` — failing rows go to quarantine with every reason
   and the batch goes on; ``warn`` — recorded only; ``block`` — the batch is blocked. The batch is
   also blocked when more than ``validation.max_quarantine_fraction`` of its rows are quarantined,
   when a column is missing, or when the row count is out of bounds with severity block.

Duplicate keys: every row of a duplicated (key, date) is quarantined — we cannot know which copy is
right, and keeping the first would depend on file order.

Hand-written suites (``validation.suites`` in the spec): a JSON list of
``{"type": "expect_column_values_to_be_between", "kwargs": {...}, "severity": "quarantine|warn|block"}``.

Invariant: ``rows_valid + rows_quarantined == rows_total``; every row is in exactly one of them.
When the batch is blocked the caller stores the quarantine and the results but no valid rows.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airtrain.data.gx import NULL_LABEL, _rules, _run_gx
from airtrain.errors import PermanentError
from airtrain.spec import BOOL_SPELLINGS, PipelineSpec, TargetSpec

_BOOL = {k: bool(v) for k, v in BOOL_SPELLINGS.items()}


class BatchBlockedError(PermanentError, ValueError):
    """A blocking validation rule failed: the partition is not used; nothing downstream runs."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


class Judged:
    """What a validated partition says of itself (in memory or in the warehouse): its summary, and the
    error that stops the run when it is blocked."""

    def summary(self) -> dict[str, Any]:
        return {"rows_total": self.rows_total, "rows_valid": self.rows_valid,
                "rows_quarantined": self.rows_quarantined, "rows_labeled": self.rows_labeled,
                "blocked": self.blocked,
                "block_reasons": self.block_reasons, "warnings": len(self.warnings),
                "failed_expectations": sum(1 for r in self.results if not r["success"])}

    def raise_if_blocked(self) -> None:
        if self.blocked:
            reasons = "\n  - ".join(self.block_reasons)
            raise BatchBlockedError(
                f"partition {self.partition_date} was blocked by validation; the model, the champion and "
                f"earlier data are untouched, and nothing downstream runs:\n  - {reasons}\n"
                f"Rejected rows are in the quarantine table; fix the source and re-run this date.",
                self.summary())


@dataclass
class ValidationOutcome(Judged):
    partition_date: dt.date
    valid: pd.DataFrame
    quarantine: pd.DataFrame  # _row_number, reasons (list[str]), row_data (dict)
    rows_total: int
    blocked: bool
    block_reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    html_report: str = ""

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def rows_labeled(self) -> int:
        """Valid rows that carried their label (the target column) in the batch."""
        label = self.valid.attrs.get("target")
        return int(self.valid[label].notna().sum()) if label in self.valid.columns else 0


def _cast(raw: pd.Series, kind: str, target: TargetSpec | None = None, date_format: str | None = None
          ) -> tuple[pd.Series, pd.Series]:
    """(typed values, mask of values that failed to cast). Missing values are not failures.

    Blank and whitespace-only values are missing (null). ``kind`` ``label`` casts a binary target
    with ``target.label_of`` (its positive/negative values, or the bool spellings)."""
    s = raw.astype("object").where(raw.notna(), None)
    present = s.map(lambda v: v is not None and str(v).strip() != "")
    text = s.map(lambda v: None if v is None else str(v).strip())
    if kind == "label":
        assert target is not None
        mapped = text.where(present, None).map(target.label_of)
        bad = present & mapped.isna()
        return mapped.astype("Int64"), bad
    if kind in ("int", "float"):
        num = pd.to_numeric(text.where(present, None), errors="coerce").astype("float64")
        bad = present & (num.isna() | ~np.isfinite(num.fillna(0.0)))
        if kind == "int":
            bad |= present & ~bad & ((num.fillna(0.0) % 1 != 0) | (num.abs().fillna(0.0) >= 2**63))
            return num.where(~bad).astype("Int64"), bad
        return num.where(~bad), bad
    if kind == "bool":
        mapped = text.map(lambda v: None if v is None else _BOOL.get(v.lower()))
        bad = present & mapped.isna()
        return mapped.astype("object"), bad
    if kind == "date":
        parsed = pd.to_datetime(text.where(present, None), format=date_format or "%Y-%m-%d", errors="coerce")
        bad = present & parsed.isna()
        return parsed.dt.date.astype("object").where(~bad & present, None), bad
    return text.where(present, None), pd.Series(False, index=s.index)


def _type_frame(raw: pd.DataFrame, spec: PipelineSpec, partition_date: dt.date | None = None
                ) -> tuple[pd.DataFrame, dict[int, list[str]], list[str]]:
    typed = pd.DataFrame({"_row_number": raw["_row_number"].astype("int64").to_numpy()}, index=raw.index)
    reasons: dict[int, list[str]] = {}
    missing = []
    kinds = {spec.entity_key: spec.entity_key_type if spec.entity_key_type == "int" else "text",
             spec.date_column: "date", **{f.name: f.type for f in spec.features}}
    t = spec.target
    kinds[t.name] = "label" if t.task == "binary_classification" else "float"
    # features that do not arrive on this date (since/until): an absent column is NULL, not missing
    inactive = set() if partition_date is None else {f.name for f in spec.features
                                                     if not f.active_on(partition_date)}
    for col, kind in kinds.items():
        if col not in raw.columns or raw[col].isna().all() and col in raw.attrs.get("columns_missing", []):
            if col == t.name and not spec.labels_from_batch:
                continue  # labels come from the labels table; this batch simply has none
            if col in inactive:
                typed[col] = _cast(pd.Series(None, index=raw.index, dtype="object"), kind, t)[0]
                continue
            missing.append(col)
            continue
        values, bad = _cast(raw[col], kind, t, spec.date_format)
        typed[col] = values
        what = (f"label ({t.label_values()})" if kind == "label" else
                f"date ({spec.date_format or '%Y-%m-%d'})" if kind == "date" else kind)
        for idx in np.flatnonzero(bad.to_numpy()):
            rn = int(typed["_row_number"].iloc[idx])
            reasons.setdefault(rn, []).append(f"{col}: {raw[col].iloc[idx]!r} is not a valid {what}")
    # one block per dtype: the frame was built column by column, and GX copies it once per metric
    # (a fragmented frame is re-consolidated on every copy)
    return typed.copy(), reasons, missing


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def missing_column_message(spec: PipelineSpec, col: str, extra: list[str]) -> str:
    """Why a column counts as missing, and the likely fix (a header that differs only in case,
    spaces or underscores is named, with the ``source:`` line that maps it)."""
    src = spec.source_columns().get(col, col)
    named = f"column '{col}'" + (f" (source header '{src}')" if src != col else "")
    if col == spec.target.name:
        named += (" - the target; the spec has no 'labels' section, so every batch must carry the label "
                  "(or add a labels section)")
    msg = f"{named} is missing from the batch (the source changed?); nothing can be validated for it"
    close = [h for h in extra if _normal(h) in {_normal(col), _normal(src)}]
    if close:
        where = ("entity_key_source" if col == spec.entity_key else "date_column_source" if col == spec.date_column
                 else "target.source" if col == spec.target.name else f"source of feature '{col}'")
        msg += f". The batch has a column '{close[0]}': set {where}: \"{close[0]}\" in the spec"
    elif col in spec.feature_names:
        msg += (". If the feature was added to the spec after this date (or the source stopped sending it), "
                "say when the column arrives: 'since: <first date>' (or 'until: <last date>') on the feature "
                "(docs/CHANGING_A_SPEC.md)")
    return msg


def _extra_columns(raw: pd.DataFrame) -> list[str]:
    """Names of the columns that landed but are not in the spec (ingest keeps them in ``_extra``)."""
    if "_extra" not in raw.columns:
        return []
    return _extra_columns_of(raw["_extra"].dropna().head(1000))


def _extra_columns_of(values: Any) -> list[str]:
    """The keys of the first ``_extra`` values (dicts or JSON text), in order of appearance."""
    names: dict[str, None] = {}
    for v in values:
        obj = json.loads(v) if isinstance(v, str) else v
        if isinstance(obj, dict):
            names.update(dict.fromkeys(obj))
    return list(names)


def validate_batch(raw: pd.DataFrame, spec: PipelineSpec, partition_date: dt.date, run_id: str, *,
                   today: dt.date | None = None, extra_suites: list[str | Path] | None = None) -> ValidationOutcome:
    """Validate one raw partition (see the module docstring)."""
    today = today or dt.date.today()
    raw = raw.reset_index(drop=True)
    if "_row_number" not in raw.columns:
        raw = raw.assign(_row_number=np.arange(1, len(raw) + 1))
    typed, reasons, missing = _type_frame(raw, spec, partition_date)
    block, warnings, results = [], [], []
    extra = _extra_columns(raw)
    for col in missing:
        block.append(missing_column_message(spec, col, extra))
        results.append({"expectation": "expect_table_columns_to_include", "column": col, "label": "missing column",
                        "severity": "block", "success": False, "unexpected_count": 0, "unexpected_percent": 0.0,
                        "observed_value": None})
    if extra:
        warnings.append(f"the batch has columns the spec does not know: {', '.join(extra)} (kept as received in "
                        "the raw table's _extra column, not used; add them to the spec to use them)")
        results.append({"expectation": "expect_table_columns_to_match_set", "column": "", "label":
                        "no unknown columns", "severity": "warn", "success": False, "unexpected_count": len(extra),
                        "unexpected_percent": 0.0, "observed_value": ", ".join(extra)})
    fr = spec.validation.freshness
    age = (today - partition_date).days
    fresh_ok = age <= fr.max_age_days
    results.append({"expectation": "freshness", "column": spec.date_column, "label":
                    f"partition at most {fr.max_age_days} days old", "severity": fr.on_fail, "success": fresh_ok,
                    "unexpected_count": 0, "unexpected_percent": 0.0, "observed_value": f"{age} days"})
    if not fresh_ok:
        msg = f"partition {partition_date} is {age} days old on {today} (limit {fr.max_age_days})"
        (block if fr.on_fail == "block" else warnings).append(msg)
    present = set(typed.columns)
    gx_results = _run_gx(typed, _rules(spec, partition_date, present, [Path(p) for p in extra_suites or []]))
    type_rows = set(reasons)
    for r in gx_results:
        rows = r.pop("_rows")
        results.append(r)
        if r["success"]:
            continue
        what = f"{r['column'] + ': ' if r['column'] else ''}{r['label']} ({r['unexpected_count']} rows)"
        if r.get("exception"):
            block.append(f"expectation {r['expectation']} could not run: {r['exception']}")
        elif r["severity"] == "quarantine" and rows:
            for rn in rows:
                if r["label"] == NULL_LABEL and rn in type_rows:
                    continue  # the value was there but invalid: the type reason says it better
                reasons.setdefault(rn, []).append(f"{r['column']}: {r['label']}")
        elif r["severity"] == "block" or (r["severity"] == "quarantine" and not rows):
            block.append(f"{what} — a blocking rule" if r["severity"] == "block" else what)
        else:
            warnings.append(what)
    total = len(raw)
    q_mask = typed["_row_number"].isin(list(reasons)).to_numpy()
    limit = spec.validation.max_quarantine_fraction
    if total and q_mask.sum() / total > limit:
        block.append(f"{q_mask.sum() / total:.1%} of rows failed validation ({int(q_mask.sum())} of {total}; "
                     f"the limit is {limit:.0%}): see the quarantine table")
    cols = [spec.entity_key, spec.date_column, *spec.feature_names, spec.target.name]
    valid = typed.loc[~q_mask, [c for c in cols if c in typed.columns]].reset_index(drop=True)
    valid.attrs["target"] = spec.target.name
    raw_cols = [c for c in raw.columns if c != "_row_number"]
    q_raw = raw.loc[q_mask]
    quarantine = pd.DataFrame({
        "_row_number": q_raw["_row_number"].astype("int64").to_numpy(),
        "reasons": [reasons[int(rn)] for rn in q_raw["_row_number"]],
        "row_data": [{c: (None if pd.isna(v) else v) for c, v in zip(raw_cols, row, strict=True)}
                     for row in q_raw[raw_cols].itertuples(index=False, name=None)],
    })
    outcome = ValidationOutcome(partition_date, valid, quarantine, total, bool(block), block, warnings, results)
    outcome.html_report = render_html(spec, outcome, run_id)
    return outcome


def render_html(spec: PipelineSpec, o: ValidationOutcome, run_id: str) -> str:
    e = html.escape
    status = "BLOCKED" if o.blocked else "PASSED"
    color = "#b00020" if o.blocked else "#1b5e20"
    rows = "".join(
        f"<tr class='{'ok' if r['success'] else 'fail'}'><td>{e(str(r['expectation']))}</td><td>{e(str(r['column']))}"
        f"</td><td>{e(str(r['label']))}</td><td>{e(str(r['severity']))}</td><td>{'✔' if r['success'] else '✘'}</td>"
        f"<td>{r['unexpected_count']}</td><td>{e(str(r.get('observed_value', '')))[:80]}</td></tr>"
        for r in o.results)
    qrows = "".join(
        f"<tr><td>{r['_row_number']}</td><td>{e('; '.join(r['reasons']))}</td><td><code>"
        f"{e(json.dumps(r['row_data'], default=str))[:300]}</code></td></tr>"
        for r in o.quarantine.head(50).to_dict("records"))
    reasons = "".join(f"<li>{e(r)}</li>" for r in o.block_reasons + o.warnings)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(spec.name)} validation {o.partition_date}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;font-size:13px}}tr.fail{{background:#fdecea}}h1 span{{color:{color}}}</style></head><body>
<h1>{e(spec.name)} — validation of {o.partition_date}: <span>{status}</span></h1>
<p>run <code>{e(run_id)}</code> · rows {o.rows_total} · valid {o.rows_valid} · quarantined {o.rows_quarantined}</p>
<ul>{reasons}</ul>
<h2>Expectations</h2><table><tr><th>expectation</th><th>column</th><th>failure means</th><th>severity</th><th>ok</th>
<th>unexpected</th><th>observed</th></tr>{rows}</table>
<h2>Quarantined rows (first 50)</h2><table><tr><th>row</th><th>reasons</th><th>row as received</th></tr>{qrows}</table>
</body></html>"""
