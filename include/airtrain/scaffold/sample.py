"""Reading a sample file and inferring what it holds: each column's kind (int, float, category, bool, a
date and its format), bounds and categories, the target's label values, and the columns that leak the
target (near-perfect predictors, a column named after it).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airtrain.data.ingest import read_rows
from airtrain.spec import (
    BOOL_SPELLINGS,
    MAX_IDENT_BYTES,
    RESERVED_WORDS,
    check_identifier,
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
    if s in RESERVED_WORDS:
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
    cells: list[str | None] = field(default_factory=list)  # every row's value (stripped; None = blank)
    date_format: str | None = None  # kind date: how its values are written

    @property
    def distinct(self) -> list[str]:
        return sorted(set(self.values))


def _is_number(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


#: the date forms recognised in a sample, most common first. When a sample fits several (every day
#: <= 12: day-first and month-first), the one whose dates lie closest together wins (a sample is
#: consecutive days, not the first of ten months) - and the spec says it was a guess
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
                "%d-%m-%Y", "%m-%d-%Y", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d/%m/%Y %H:%M",
                "%m/%d/%Y %H:%M", "%d-%m-%Y %H:%M:%S")


ISO_DATE = "%Y-%m-%d"


def _parses(values: set[str], fmt: str) -> bool:
    try:
        for v in values:
            dt.datetime.strptime(v, fmt)
    except ValueError:
        return False
    return True


def date_format_of(values: list[str]) -> tuple[str | None, bool]:
    """(the form every value is written in, whether another form fits too), or (None, False)."""
    distinct = set(values)
    if not distinct or any(len(v) < 6 or not any(c.isdigit() for c in v) for v in distinct):
        return None, False
    fits = [f for f in DATE_FORMATS if _parses(distinct, f)]
    if not fits:
        return None, False

    days = {f: {parse_day(v, f) for v in distinct} for f in fits}
    best = min(fits, key=lambda f: ((max(days[f]) - min(days[f])).days, fits.index(f)))
    return best, any(days[f] != days[best] for f in fits)  # another form reads other dates


def parse_day(value: str, fmt: str) -> dt.date:
    return dt.datetime.strptime(value, fmt).date()


def infer_kind(col: Column, max_categories: int) -> str:
    vals = col.values
    if not vals:
        return "text"
    distinct = set(vals)
    if all(v.lower() in BOOL_SPELLINGS for v in distinct) and len({BOOL_SPELLINGS[v.lower()] for v in distinct}) == 2:
        return "bool"
    if all(_is_number(v) for v in distinct):
        return "int" if all(float(v).is_integer() and abs(float(v)) < 2**53 for v in distinct) else "float"
    fmt, _ = date_format_of(vals)
    if fmt is not None:
        col.date_format = fmt
        return "date"
    return "category" if len(distinct) <= max_categories else "text"


def read_sample(path: Path) -> list[Column]:
    header, rows = read_rows(path, "parquet" if path.suffix.lower() == ".parquet" else "csv")
    cols = []
    for i, h in enumerate(header):
        cells = [None if v is None or str(v).strip() == "" else str(v).strip() for v in (r[i] for r in rows)]
        present = [v for v in cells if v is not None]
        cols.append(Column(h, present, len(cells) - len(present), cells=cells))
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


#: at least this many rows with both values before a column is judged
LEAK_MIN_ROWS = 30


def _as_numbers(col: Column, kind: str) -> Any:
    import numpy as np

    def num(v: str | None) -> float:
        if v is None:
            return np.nan
        if kind == "bool":
            return float(BOOL_SPELLINGS.get(v.lower(), np.nan))
        try:
            return float(v)
        except ValueError:
            return np.nan

    return np.array([num(v) for v in col.cells], dtype=float)


def _auc(x: Any, y: Any) -> float:
    """ROC AUC of score ``x`` for the 0/1 label ``y`` (Mann-Whitney, ties averaged)."""
    import pandas as pd

    ranks = pd.Series(x).rank(method="average").to_numpy()
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return 0.5
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def find_leaks(features: list[Column], target: Column, task: str, positive: str | None) -> dict[str, str]:
    """{header: why} of the feature columns that give the target away (see the module docstring).

    Numbers and bools: |Pearson r| >= 0.98 or |rank correlation| >= 0.99 with a numeric target, ROC
    AUC >= 0.99 (or <= 0.01) on its own for a binary one; two or three columns whose sum equals a
    numeric target on >= 99 % of rows. Categories with few values (at most one per 20 rows): their
    value alone gives a binary target on >= 99 % of rows (and beats always guessing the majority by
    5 points), or explains >= 99 % of a numeric target's variance."""
    import numpy as np
    import pandas as pd

    if task == "regression":
        y = _as_numbers(target, "float")
    else:
        y = np.array([np.nan if v is None else float(v == positive) for v in target.cells])
    leaks: dict[str, str] = {}
    numeric = [c for c in features if c.kind in ("int", "float", "bool")]
    xs = {c.header: _as_numbers(c, c.kind) for c in numeric}
    with np.errstate(all="ignore"):
        for c in numeric:
            x = xs[c.header]
            m = np.isfinite(x) & np.isfinite(y)
            if m.sum() < LEAK_MIN_ROWS or np.ptp(x[m]) == 0:
                continue
            if task == "regression":
                r = float(np.corrcoef(x[m], y[m])[0, 1])
                rho = float(pd.Series(x[m]).corr(pd.Series(y[m]), method="spearman"))
                if abs(r) >= 0.98:
                    leaks[c.header] = f"correlates with the target almost perfectly (r = {r:.3f})"
                elif abs(rho) >= 0.99:
                    leaks[c.header] = f"orders the rows like the target almost perfectly (rank correlation {rho:.3f})"
            else:
                auc = _auc(x[m], y[m])
                if max(auc, 1 - auc) >= 0.99:
                    leaks[c.header] = f"alone predicts the target almost perfectly (ROC AUC {max(auc, 1 - auc):.3f})"
        if task == "regression":
            parts = [c for c in numeric if c.kind in ("int", "float")][:30]
            for size in (2, 3) if len(parts) <= 12 else (2,):
                for combo in itertools.combinations(parts, size):
                    total = sum(xs[c.header] for c in combo)
                    m = np.isfinite(total) & np.isfinite(y)
                    if m.sum() < LEAK_MIN_ROWS:
                        continue
                    hit = np.abs(total[m] - y[m]) <= 1e-6 * np.maximum(1.0, np.abs(y[m]))
                    if hit.mean() >= 0.99:
                        formula = " + ".join(c.header for c in combo)
                        for c in combo:
                            leaks.setdefault(c.header, f"a part of the target: {formula} = {target.header} on "
                                                       f"{hit.mean():.0%} of the sample's rows")
        for c in features:
            if c.kind != "category":
                continue
            g = np.array([v if v is not None else "\0" for v in c.cells], dtype=object)
            m = np.isfinite(y) & (g != "\0")
            n = int(m.sum())
            groups = pd.Series(y[m]).groupby(pd.Series(g[m]))
            if n < LEAK_MIN_ROWS or not 2 <= groups.ngroups <= n / 20:
                continue
            if task == "regression":
                total = float(((y[m] - y[m].mean()) ** 2).sum())
                within = float(groups.apply(lambda s: ((s - s.mean()) ** 2).sum()).sum())
                if total > 0 and 1 - within / total >= 0.99:
                    leaks[c.header] = f"its value alone explains {1 - within / total:.1%} of the target's variance"
            else:
                purity = float(groups.apply(lambda s: max(s.sum(), len(s) - s.sum())).sum()) / n
                baseline = max(y[m].mean(), 1 - y[m].mean())
                if purity >= 0.99 and purity - baseline >= 0.05:
                    leaks[c.header] = f"its value alone gives the target on {purity:.1%} of rows"
    return leaks
