"""Write a starting spec for a new pipeline from a sample of its data (`make new-pipeline`).

    python -m airtrain.scaffold sample.csv --name telco --target Churn [--key customerID]
    make new-pipeline SAMPLE=sample.csv NAME=telco TARGET=Churn [KEY=customerID]

The sample is read exactly as the ingest task reads a landing file (every value as text; blank and
whitespace-only values are null). For every column it infers:

* the warehouse name: the header in snake_case (``MonthlyCharges`` → ``monthly_charges``, with
  ``source: MonthlyCharges`` so the file needs no rewriting);
* the type: ``bool`` when every value is a bool spelling (yes/no, true/false, 1/0, ...), ``int`` or
  ``float`` when every value is a number, else ``category`` with the values seen as ``allowed``
  (columns with more distinct values than ``--max-categories`` are left out, with a comment);
* ``nullable: true`` when the sample has blanks (they are then imputed by the model's pipeline);
* ``min``/``max`` from the values seen, widened by half their span (``min: 0`` for non-negative data);
* the target: ``binary_classification`` with ``positive:`` (the yes/true/1-like value, else the rarer
  one) when it has two values, else ``regression``; labels come from the file itself
  (``label_delay_days: 0``, no ``labels`` section);
* batch size bounds, the training and monitoring windows and minimum row counts from the number
  of rows per day (the sample's rows, or rows per date when it has a date column).

The spec is validated before it is written and never overwrites a file unless ``--force``. It is a
starting point: read it, tighten the ranges and categories, choose the estimator and the gates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airtrain.spec import (
    _RESERVED,
    BOOL_SPELLINGS,
    DEFAULT_SPEC_DIR,
    MAX_IDENT_BYTES,
    SpecError,
    check_identifier,
    parse_spec,
)

POSITIVE_WORDS = ("yes", "y", "true", "t", "1", "churn", "churned", "positive", "pos")


def snake_case(header: str) -> str:
    """A safe SQL identifier from a header: ``customerID`` → ``customer_id``, ``Total Charges`` →
    ``total_charges``, ``2nd line`` → ``c_2nd_line``, ``order`` → ``order_``."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", header.strip())
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower() or "col"
    if s[0].isdigit():
        s = f"c_{s}"
    s = s[:MAX_IDENT_BYTES - 1]
    if s in _RESERVED:
        s = f"{s}_"
    return check_identifier(s)


@dataclass
class Column:
    header: str
    values: list[str]  # non-blank, stripped
    blanks: int
    name: str = ""
    kind: str = ""  # bool | int | float | category | date | text
    notes: list[str] = field(default_factory=list)

    @property
    def distinct(self) -> list[str]:
        return sorted(set(self.values))


def _is_number(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


def _is_date(v: str) -> bool:
    try:
        dt.date.fromisoformat(v)
        return len(v) == 10
    except ValueError:
        return False


def infer_kind(col: Column, max_categories: int) -> str:
    vals = col.values
    if not vals:
        return "text"
    distinct = set(vals)
    if all(v.lower() in BOOL_SPELLINGS for v in distinct) and len({BOOL_SPELLINGS[v.lower()] for v in distinct}) == 2:
        return "bool"
    if all(_is_number(v) for v in distinct):
        return "int" if all(float(v).is_integer() and abs(float(v)) < 2**53 for v in distinct) else "float"
    if all(_is_date(v) for v in distinct):
        return "date"
    return "category" if len(distinct) <= max_categories else "text"


def read_sample(path: Path) -> list[Column]:
    from airtrain.ingest import _read_csv, _read_parquet

    data = path.read_bytes()
    header, rows = (_read_parquet if path.suffix.lower() == ".parquet" else _read_csv)(data, path)
    cols = []
    for i, h in enumerate(header):
        raw = [r[i] for r in rows]
        present = [str(v).strip() for v in raw if v is not None and str(v).strip() != ""]
        cols.append(Column(h, present, len(raw) - len(present)))
    return cols


def _bounds(values: list[float], kind: str) -> tuple[float, float, str]:
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    low = 0.0 if lo >= 0 else lo - span / 2
    high = hi + span / 2
    if kind == "int":
        low, high = math.floor(low), math.ceil(high)
    else:
        low, high = round(low, 2), round(high, 2)
    seen = f"{lo:g}..{hi:g}"
    return low, high, seen


def _label_values(col: Column, positive: str | None) -> tuple[str, str]:
    values = col.distinct
    if positive is not None:
        if positive not in values:
            raise SystemExit(f"error: --positive {positive!r} is not a value of {col.header!r} (seen: {values})")
        return positive, next(v for v in values if v != positive)
    for word in POSITIVE_WORDS:
        hit = [v for v in values if v.lower() == word]
        if hit:
            return hit[0], next(v for v in values if v != hit[0])
    counts = {v: col.values.count(v) for v in values}
    rare = min(values, key=lambda v: (counts[v], v))
    return rare, next(v for v in values if v != rare)


def _flow(d: Any) -> str:
    """One-line YAML for a mapping, a list or a string (strings double-quoted: 'Yes' stays text)."""
    if isinstance(d, str):
        return json.dumps(d, ensure_ascii=False)
    return yaml.safe_dump(d, default_flow_style=True, sort_keys=False, width=10_000).strip()


def build_spec(cols: list[Column], *, name: str, target: str, key: str | None, date_column: str | None,
               positive: str | None, sample: Path, max_categories: int = 30, fmt: str = "csv"
               ) -> tuple[str, dict[str, Any]]:
    """(YAML text with comments, the parsed mapping) of a starting spec."""
    by_header = {c.header: c for c in cols}
    if target not in by_header:
        raise SystemExit(f"error: the sample has no column {target!r} (columns: {list(by_header)})")
    if key is None:
        candidates = [c for c in cols if c.header.lower().endswith("id") and not c.blanks
                      and len(set(c.values)) == len(c.values)]
        if not candidates:
            raise SystemExit("error: no column looks like the entity key (a unique, never blank '...id' column); "
                             "name it with --key")
        key = candidates[0].header
    if key not in by_header:
        raise SystemExit(f"error: the sample has no column {key!r} (columns: {list(by_header)})")
    for c in cols:
        c.kind = infer_kind(c, max_categories)
    if date_column is None:
        dated = [c for c in cols if c.kind == "date" and c.header not in (key, target)]
        date_column = dated[0].header if dated else None
    used: set[str] = set()

    def unique_name(header: str) -> str:
        base = snake_case(header)
        n, i = base, 2
        while n in used:
            n, i = f"{base[:MAX_IDENT_BYTES - 4]}_{i}", i + 1
        used.add(n)
        return n

    key_col = by_header[key]
    key_name = unique_name(key)
    date_name = unique_name(date_column) if date_column else "as_of_date"
    used.add(date_name)
    t = by_header[target]
    target_name = unique_name(target)
    days = sorted(set(by_header[date_column].values)) if date_column else []
    rows = len(key_col.values) + key_col.blanks
    per_day = max(1, math.ceil(rows / len(days))) if days else max(1, rows)

    features: list[str] = []
    skipped: list[str] = []
    for c in cols:
        if c.header in (key, target, date_column):
            continue
        if c.kind in ("text", "date"):
            what = "a date" if c.kind == "date" else f"{len(set(c.values))} distinct values: an identifier or free text"
            skipped.append(f"#   {c.header!r}: not a feature ({what}); stays in the raw table's _extra column")
            continue
        c.name = unique_name(c.header)
        entry: dict[str, Any] = {"name": c.name}
        if c.name != c.header:
            entry["source"] = c.header
        entry["type"] = c.kind
        comment = []
        if c.blanks:
            entry["nullable"] = True
            comment.append(f"{c.blanks} blank{'s' if c.blanks > 1 else ''} in the sample (imputed)")
        if c.kind in ("int", "float"):
            low, high, seen = _bounds([float(v) for v in c.values], c.kind)
            entry["min"], entry["max"] = low, high
            comment.append(f"seen {seen}")
        elif c.kind == "category":
            entry["allowed"] = c.distinct
        elif c.kind == "bool":
            comment.append(f"values {c.distinct}")
        features.append(f"  - {_flow(entry)}" + (f"  # {'; '.join(comment)}" if comment else ""))
    if not features:
        raise SystemExit("error: no usable feature columns in the sample")

    t.kind = "label"
    tvals = t.distinct
    target_entry: dict[str, Any] = {"name": target_name}
    if target_name != target:
        target_entry["source"] = target
    if len(tvals) == 2:
        pos, neg = _label_values(t, positive)
        target_entry.update(task="binary_classification", label_delay_days=0, positive=pos, negative=neg)
        metrics = ["roc_auc", "average_precision", "f1", "log_loss"]
        primary, estimator = "roc_auc", "sklearn.ensemble.HistGradientBoostingClassifier"
        gates = [{"metric": "roc_auc", "threshold": 0.6, "max_regression_abs": 0.01},
                 {"metric": "log_loss", "max_regression_rel": 0.05}]
        slices = [c.name for c in cols if c.kind == "category" and c.name][:2]
    elif all(_is_number(v) for v in tvals) and len(tvals) > 2:
        target_entry.update(task="regression", label_delay_days=0)
        metrics, primary, estimator = ["rmse", "mae", "r2"], "rmse", "sklearn.ensemble.HistGradientBoostingRegressor"
        gates = [{"metric": "rmse", "max_regression_rel": 0.05}]
        slices = []
    else:
        raise SystemExit(f"error: the target {target!r} has values {tvals[:10]}: two values (a binary target) or "
                         "numbers (regression) are needed")

    window, holdout = 30, 7
    train_min = max(10, min(500, per_day * (window - holdout) // 2))
    mon_days = min(30, max(1, math.ceil(300 / per_day)))
    mon_min = max(1, min(200, per_day * mon_days // 2))
    rc = {"min": max(1, per_day // 2), "max": per_day * 3, "on_fail": "block"}
    key_type = "int" if key_col.kind == "int" else "text"

    lines = [
        f"# Starting spec for '{name}', written by `python -m airtrain.scaffold` from {sample.name}",
        f"# ({rows} rows{f' over {len(days)} days' if days else ''}; about {per_day} rows a day).",
        "# Check every line: types, ranges and categories come from the sample only. Keys: docs/SPEC.md.",
        f"name: {name}",
        f"description: {_flow(f'Pipeline {name} (scaffolded from {sample.name}).')}",
        "owner: ml-platform",
        "",
        "source:",
        "  kind: files",
        f"  path: data/landing/{name}        # one file per day: YYYY-MM-DD.{fmt}",
        f"  format: {fmt}",
        f"  pattern: \"{{date}}.{fmt}\"",
        "",
        f"entity_key: {key_name}",
    ]
    if key_name != key:
        lines.append(f"entity_key_source: {_flow(key)}")
    lines.append(f"entity_key_type: {key_type}")
    if date_column:
        lines.append(f"date_column: {date_name}")
        if date_name != date_column:
            lines.append(f"date_column_source: {_flow(date_column)}")
    else:
        lines.append("# no date column in the sample: each file's rows get the file's date (as_of_date)")
    lines += ["", "features:", *features]
    if skipped:
        lines += ["# columns left out:", *skipped]
    lines += ["", "# the label is in the file: taken from each batch (label_delay_days: 0, no 'labels' section)",
              f"target: {_flow(target_entry)}", "", "validation:",
              f"  row_count: {_flow(rc)}   # about {per_day} rows a day in the sample",
              "  freshness: {max_age_days: 2, on_fail: warn}", "  max_quarantine_fraction: 0.2", "",
              "training:", f"  estimator: {estimator}", "  params: {max_iter: 150, learning_rate: 0.08}",
              f"  window_days: {window}", f"  holdout_days: {holdout}", f"  min_rows: {train_min}", "",
              "evaluation:", f"  metrics: {_flow(metrics)}", f"  primary_metric: {primary}",
              f"  slices: {_flow(slices)}", "", "promotion:", "  gates:",
              *[f"    - {_flow(g)}" for g in gates], "",
              "monitoring:", f"  window_days: {mon_days}", f"  min_rows: {mon_min}", "",
              "scoring:", "  partitions: 1", "",
              "schedule:", "  start_paused: true   # land the first files, then unpause the DAGs",
              '  retrain: "0 3 * * *"', '  monitor: "0 5 * * *"',
              f"  start_date: {dt.date.today().isoformat()}", ""]
    text = "\n".join(lines)
    data = yaml.safe_load(text)
    return text, data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m airtrain.scaffold", description=__doc__.split("\n")[0])
    ap.add_argument("sample", type=Path, help="a CSV or Parquet file with the columns of a landing file")
    ap.add_argument("--name", required=True, help="pipeline name (lower-case identifier, at most 30 characters)")
    ap.add_argument("--target", required=True, help="the label column, as named in the file")
    ap.add_argument("--key", default=None, help="the entity key column, as named in the file (default: guessed)")
    ap.add_argument("--date-column", default=None, help="the snapshot date column, if the file has one")
    ap.add_argument("--positive", default=None, help="the target value meaning 1 (default: guessed)")
    ap.add_argument("--max-categories", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None, help="default: include/pipelines/<name>.yaml")
    ap.add_argument("--force", action="store_true", help="overwrite an existing spec")
    args = ap.parse_args(argv)
    if not args.sample.is_file():
        print(f"error: {args.sample} is not a file", file=sys.stderr)
        return 2
    out = args.out or DEFAULT_SPEC_DIR / f"{args.name}.yaml"
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    fmt = "parquet" if args.sample.suffix.lower() == ".parquet" else "csv"
    try:
        cols = read_sample(args.sample)
        text, data = build_spec(cols, name=args.name, target=args.target, key=args.key,
                                date_column=args.date_column, positive=args.positive, sample=args.sample,
                                max_categories=args.max_categories, fmt=fmt)
        parse_spec(data, out)
    except SpecError as exc:
        print(f"error: the generated spec does not load ({exc}); please report this", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    print(f"next: read it and adjust it; land one file per day as data/landing/{args.name}/YYYY-MM-DD.{fmt};")
    print(f"      the DAGs {args.name}_retrain and {args.name}_monitor appear paused: unpause them when data is "
          "there")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
