"""The starting spec from the inferred columns (:func:`build_spec`) and the command line (:func:`main`);
the package docstring says what is inferred and how.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from airtrain.scaffold.sample import (
    ISO_DATE,
    Column,
    _bounds,
    _is_number,
    _label_values,
    _parses,
    date_format_of,
    find_leaks,
    infer_kind,
    parse_day,
    read_sample,
    snake_case,
)
from airtrain.spec import (
    DEFAULT_SPEC_DIR,
    MAX_IDENT_BYTES,
    SpecError,
    parse_spec,
)

# ---------------------------------------------------------------------------------------------
# leaks: columns that give the target away
# ---------------------------------------------------------------------------------------------


def _flow(d: Any) -> str:
    """One-line YAML for a mapping, a list or a string (strings double-quoted: 'Yes' stays text)."""
    if isinstance(d, str):
        return json.dumps(d, ensure_ascii=False)
    return yaml.safe_dump(d, default_flow_style=True, sort_keys=False, width=10_000).strip()


def build_spec(cols: list[Column], *, name: str, target: str, key: str | None, date_column: str | None,
               positive: str | None, sample: Path, max_categories: int = 30, fmt: str = "csv",
               date_format: str | None = None, warnings: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """(YAML text with comments, the parsed mapping) of a starting spec. What the user must look at
    (leaks, a guessed date form, a sample of one day) is appended to ``warnings``."""
    warnings = warnings if warnings is not None else []
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
    elif date_column not in by_header:
        raise SystemExit(f"error: the sample has no column {date_column!r} (columns: {list(by_header)})")
    day_format, ambiguous = None, False
    if date_column:
        dcol = by_header[date_column]
        if date_format:
            bad = next((v for v in dcol.values if not _parses({v}, date_format)), None)
            if bad is not None:
                raise SystemExit(f"error: {date_column!r} has {bad!r}, which is not a date in the form {date_format!r}")
            day_format = date_format
        else:
            day_format, ambiguous = date_format_of(dcol.values)
            if day_format is None:
                raise SystemExit(f"error: the date column {date_column!r} has values like {dcol.values[:3]} that are "
                                 "not dates in a form this tool knows; give the form with --date-format "
                                 "(e.g. '%d-%m-%Y')")
        dcol.kind, dcol.date_format = "date", day_format
        if ambiguous:
            warnings.append(f"the date column {date_column!r} reads as {day_format!r} but also fits another form "
                            "(every day of the sample is 12 or less): check date_format in the spec")
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
    rows = len(key_col.values) + key_col.blanks
    if date_column:
        per_date = Counter(parse_day(v, day_format) for v in by_header[date_column].values)  # type: ignore[arg-type]
        days = sorted(per_date)
        counts = sorted(per_date.values())
    else:
        days, counts = [], [rows]
    per_day = max(1, counts[len(counts) // 2])  # the median day
    fewest, most = max(1, counts[0]), max(1, counts[-1])
    if len(counts) == 1:
        warnings.append(("the sample has one day" if date_column else "the sample has no date column, so it is "
                         "taken as ONE day") + f" ({rows} rows): batch bounds and windows assume {per_day} rows a "
                         "day; a sample of several days (with its date column) sizes them from real days")

    t_kind = ("binary_classification" if len(t.distinct) == 2 else
              "regression" if all(_is_number(v) for v in t.distinct) and len(t.distinct) > 2 else None)
    candidates = [c for c in cols if c.header not in (key, target, date_column) and c.kind not in ("text", "date")]
    pos_value = _label_values(t, positive)[0] if t_kind == "binary_classification" else None
    leaks = find_leaks(candidates, t, t_kind, pos_value) if t_kind else {}
    for header, why in leaks.items():
        warnings.append(f"column {header!r} looks like a leak of the target: {why}; it is marked model_input: false "
                        "(kept and validated, not given to the model)")
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
        if c.header in leaks:
            entry["model_input"] = False
            comment.insert(0, f"LEAK? {leaks[c.header]}: not given to the model; set model_input: true only if it "
                              "is known when predictions are made")
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
        # the primary metric must not get worse than the champion's (the gate's default: no tolerance on
        # roc_auc); log loss may by 5% (calibration moves more than ranking)
        gates = [{"metric": "roc_auc", "threshold": 0.6},
                 {"metric": "log_loss", "max_regression_rel": 0.05}]
        drop = None
        slices = [c.name for c in cols if c.kind == "category" and c.name and c.header not in leaks][:2]
    elif all(_is_number(v) for v in tvals) and len(tvals) > 2:
        target_entry.update(task="regression", label_delay_days=0)
        metrics, primary, estimator = ["rmse", "mae", "r2"], "rmse", "sklearn.ensemble.HistGradientBoostingRegressor"
        # better than predicting the mean (r2 > 0); rmse, the primary metric, must not get worse (the default)
        gates = [{"metric": "r2", "threshold": 0.0}]
        # the realized-performance trigger in the target's own units: a rise of the RMSE by a tenth of the
        # target's spread in the sample (the 0.05 default is for scale-free metrics)
        numbers = [float(v) for v in t.values if _is_number(v)]
        mean = sum(numbers) / len(numbers)
        spread = (sum((x - mean) ** 2 for x in numbers) / max(len(numbers) - 1, 1)) ** 0.5
        drop = float(f"{max(spread / 10, 1e-6):.3g}")
        slices = []
    else:
        raise SystemExit(f"error: the target {target!r} has values {tvals[:10]}: two values (a binary target) or "
                         "numbers (regression) are needed")

    window, holdout = 30, 7
    train_min = max(10, min(500, per_day * (window - holdout) // 2))
    # a monitoring window holds ~300 rows (at most 30 days); its minimum is half of what the window
    # usually holds (never more than the smallest days could fill, never more than 200)
    mon_days = min(30, max(1, math.ceil(300 / per_day)))
    mon_min = max(1, min(200, min(per_day, fewest * 2) * mon_days // 2))
    rc = {"min": max(1, fewest // 2), "max": most * 3, "on_fail": "block"}
    key_type = "int" if key_col.kind == "int" else "text"

    spread = f"{fewest}..{most} rows a day, median {per_day}" if len(counts) > 1 else f"taken as {per_day} rows a day"
    lines = [
        f"# Starting spec for '{name}', written by `python -m airtrain.scaffold` from {sample.name}",
        f"# ({rows} rows{f' over {len(days)} days, {days[0]}..{days[-1]}' if days else ''}; {spread}).",
        "# Check every line: types, ranges and categories come from the sample only. Keys: docs/SPEC.md.",
        *[f"# WARNING: {w}" for w in warnings],
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
        if day_format != ISO_DATE:
            lines.append(f"date_format: {_flow(day_format)}   # how the file writes its dates"
                         + (" (a guess: the sample fits another form too)" if ambiguous else ""))
    else:
        lines.append("# no date column in the sample: each file's rows get the file's date (as_of_date)")
    lines += ["", "features:", *features]
    if skipped:
        lines += ["# columns left out:", *skipped]
    lines += ["", "# the label is in the file: taken from each batch (label_delay_days: 0, no 'labels' section)",
              f"target: {_flow(target_entry)}", "", "validation:",
              f"  row_count: {_flow(rc)}   # {spread} in the sample",
              "  freshness: {max_age_days: 2, on_fail: warn}", "  max_quarantine_fraction: 0.2", "",
              "training:", f"  estimator: {estimator}", "  params: {max_iter: 150, learning_rate: 0.08}",
              f"  window_days: {window}", f"  holdout_days: {holdout}", f"  min_rows: {train_min}", "",
              "evaluation:", f"  metrics: {_flow(metrics)}", f"  primary_metric: {primary}",
              f"  slices: {_flow(slices)}", "", "promotion:", "  gates:",
              *[f"    - {_flow(g)}" for g in gates], "",
              "monitoring:", f"  window_days: {mon_days}   # ~{per_day * mon_days} rows per window",
              f"  min_rows: {mon_min}   # fewer rows in a window: insufficient data, never drift",
              *([f"  trigger: {{performance_drop_abs: {drop:g}}}   # retrain when the realized {primary} rises by "
                 f"this much (a tenth of the target's spread in the sample: set what matters to you)"]
                if drop is not None else []), "",
              "scoring:", "  partitions: 1", "",
              "schedule:", "  start_paused: true   # land the first files, then unpause the DAGs",
              '  retrain: "0 3 * * *"', '  monitor: "0 5 * * *"',
              f"  start_date: {dt.date.today().isoformat()}",
              f"  # first_date: {days[0] if days else dt.date.today()}   # the first day with data: no run processes an "
              "earlier day",
              "  # last_date: ...          # historical data only: the last day (no scheduled run after it)", ""]
    text = "\n".join(lines)
    data = yaml.safe_load(text)
    return text, data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m airtrain.scaffold", description="Write a starting spec for a new "
                                 "pipeline from a sample of its data (`make new-pipeline`).")
    ap.add_argument("sample", type=Path, help="a CSV or Parquet file with the columns of a landing file")
    ap.add_argument("--name", required=True, help="pipeline name (lower-case identifier, at most 30 characters)")
    ap.add_argument("--target", required=True, help="the label column, as named in the file")
    ap.add_argument("--key", default=None, help="the entity key column, as named in the file (default: guessed)")
    ap.add_argument("--date-column", default=None, help="the snapshot date column, if the file has one "
                    "(default: the first column whose every value is a date)")
    ap.add_argument("--date-format", default=None, help="how the date column is written, e.g. '%%d-%%m-%%Y' "
                    "(default: recognised from the values)")
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
    warnings: list[str] = []
    try:
        cols = read_sample(args.sample)
        text, data = build_spec(cols, name=args.name, target=args.target, key=args.key,
                                date_column=args.date_column, positive=args.positive, sample=args.sample,
                                max_categories=args.max_categories, fmt=fmt, date_format=args.date_format,
                                warnings=warnings)
        parse_spec(data, out)
    except SpecError as exc:
        print(f"error: the generated spec does not load ({exc}); please report this", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out}")
    print(f"next: read it and adjust it; land one file per day as data/landing/{args.name}/YYYY-MM-DD.{fmt};")
    print(f"      the DAGs {args.name}_retrain and {args.name}_monitor appear paused: unpause them when data is "
          "there")
    return 0
