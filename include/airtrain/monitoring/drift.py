"""The drift test, behind one adapter around Evidently 0.7: the method and threshold of every column
(:func:`column_rules`), one Evidently report per window, and its result read back failing closed
(:func:`parse_drift_result`: a result shape this adapter does not know raises, never reads as "no drift").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from airtrain.errors import PermanentError
from airtrain.spec import PipelineSpec

#: drift methods whose score is a p-value: drift when the score is *below* the threshold
P_VALUE_METHODS = frozenset({"ks", "chisquare"})


#: methods that only make sense for numeric columns
NUMERIC_ONLY = frozenset({"ks", "wasserstein"})


#: each method's usual threshold, used when the spec gives none for a column whose method differs
#: from ``monitoring.default_method``
METHOD_THRESHOLDS = {"psi": 0.1, "ks": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "chisquare": 0.05,
                     "kl_div": 0.1}


NULL_CATEGORY = "__null__"


PREDICTION = "prediction"


@dataclass(frozen=True)
class ColumnRule:
    column: str
    kind: str  # "numerical" | "categorical"
    method: str
    threshold: float

    def drifted(self, score: float | None) -> bool | None:
        if score is None:
            return None
        return score < self.threshold if self.method in P_VALUE_METHODS else score >= self.threshold


def column_rules(spec: PipelineSpec) -> list[ColumnRule]:
    """The drift method and threshold of every feature (spec ``monitoring.columns`` over defaults)."""
    m = spec.monitoring
    rules = []
    for f in spec.features:
        kind = "numerical" if f.type in ("int", "float") else "categorical"
        col = m.columns.get(f.name)
        method = col.method if col is not None and col.method else m.default_method
        if kind == "categorical" and method in NUMERIC_ONLY:
            method = "jensenshannon"  # ks/wasserstein need numbers; categories use a distribution distance
        if col is not None and col.threshold is not None:
            threshold = col.threshold
        elif method == m.default_method:
            threshold = m.default_threshold
        else:
            threshold = METHOD_THRESHOLDS[method]
        rules.append(ColumnRule(f.name, kind, method, float(threshold)))
    return rules


def prediction_rule(spec: PipelineSpec) -> ColumnRule:
    m = spec.monitoring
    return ColumnRule(PREDICTION, "numerical", m.default_method, float(m.default_threshold))


def _evidently_frame(df, rules: list[ColumnRule]):
    import pandas as pd

    out = {}
    for r in rules:
        s = df[r.column]
        if r.kind == "numerical":
            out[r.column] = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            out[r.column] = s.astype("object").where(s.notna(), NULL_CATEGORY).astype(str)
    return pd.DataFrame(out)


def evidently_drift(reference, current, rules: list[ColumnRule], drift_share: float):
    """Run the Evidently report; returns ({column: score or None}, snapshot)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently telemetry off
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    # a column without observed values on either side (a feature newer than the reference) is skipped,
    # not compared as "all NULL" against values (the caller names every skipped column in its decision)
    skips = drift_skips(reference, current, rules)
    usable = [r for r in rules if r.column not in skips]
    skipped = [r for r in rules if r.column in skips]
    ref_df, cur_df = _evidently_frame(reference, usable), _evidently_frame(current, usable)
    definition = DataDefinition(numerical_columns=[r.column for r in usable if r.kind == "numerical"],
                                categorical_columns=[r.column for r in usable if r.kind == "categorical"])
    features = [r for r in usable if r.column != PREDICTION]
    metrics: list[Any] = []
    if features:
        metrics.append(DriftedColumnsCount(
            columns=[r.column for r in features], drift_share=drift_share,
            per_column_method={r.column: r.method for r in features},
            per_column_threshold={r.column: r.threshold for r in features}))
    metrics += [ValueDrift(column=r.column, method=r.method, threshold=r.threshold) for r in usable]
    snapshot = Report(metrics).run(Dataset.from_pandas(cur_df, data_definition=definition),
                                   Dataset.from_pandas(ref_df, data_definition=definition))
    scores: dict[str, float | None] = {r.column: None for r in skipped}
    scores.update(parse_drift_result(snapshot.dict(), usable))
    return scores, snapshot


class DriftResultError(PermanentError, RuntimeError):
    """Evidently's result does not hold what the adapter asked for (its result shape changed?)."""


def _metric_type(m: dict[str, Any]) -> str:
    return str((m.get("config") or {}).get("type", "")).rsplit(":", 1)[-1]


def parse_drift_result(result: dict[str, Any], rules: list[ColumnRule]) -> dict[str, float]:
    """{column: score} from an Evidently ``Snapshot.dict()``, failing closed.

    Requires exactly one ``ValueDrift`` result per rule, with a finite number as its value, and -
    when feature columns (all but :data:`PREDICTION`) were asked for - exactly one
    ``DriftedColumnsCount`` whose drifted count equals the count the per-column scores and
    thresholds give. Anything else raises :class:`DriftResultError`: a library upgrade that changes
    the result's shape fails the check loudly instead of turning every score into "no drift"."""

    metrics = result.get("metrics") if isinstance(result, dict) else None
    if not isinstance(metrics, list):
        raise DriftResultError(f"the Evidently result has no 'metrics' list (keys: {sorted(result or {})}); "
                               "the installed Evidently's result shape is not the one this adapter knows")
    found: dict[str, list[Any]] = {}
    counts: list[Any] = []
    for m in metrics:
        kind = _metric_type(m)
        if kind == "ValueDrift":
            found.setdefault(str((m.get("config") or {}).get("column")), []).append(m.get("value"))
        elif kind == "DriftedColumnsCount":
            counts.append(m.get("value"))
    scores: dict[str, float] = {}
    problems = []
    for r in rules:
        values = found.get(r.column, [])
        if len(values) != 1:
            problems.append(f"{len(values)} ValueDrift results for column {r.column!r} (expected exactly 1)")
            continue
        v = values[0]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            problems.append(f"the ValueDrift result of column {r.column!r} is {v!r}, not a finite number")
            continue
        scores[r.column] = float(v)
    unknown = sorted(set(found) - {r.column for r in rules})
    if unknown:
        problems.append(f"ValueDrift results for columns that were not asked for: {unknown}")
    features = [r for r in rules if r.column != PREDICTION]
    if features and not problems:
        if len(counts) != 1:
            problems.append(f"{len(counts)} DriftedColumnsCount results (expected exactly 1)")
        else:
            c = counts[0].get("count") if isinstance(counts[0], dict) else None
            ours = sum(1 for r in features if r.drifted(scores[r.column]))
            if isinstance(c, bool) or not isinstance(c, int | float):
                problems.append(f"the DriftedColumnsCount result is {counts[0]!r}, without a numeric 'count'")
            elif int(c) != ours:
                problems.append(f"Evidently counts {int(c)} drifted feature columns, but the per-column scores "
                                f"and thresholds give {ours} (has the meaning of a method's threshold changed?)")
    if problems:
        raise DriftResultError("the Evidently drift result does not match what was asked for, so no drift "
                               "decision is made (check the installed evidently version against "
                               "requirements.txt):\n  - " + "\n  - ".join(problems))
    return scores


def drift_skips(reference: Any, current: Any, rules: list[Any]) -> dict[str, str]:
    """{column: why} for the drift rules that cannot be compared: fewer than 2 observed values of a
    numerical column (1 of a categorical one) in the reference or in the window."""
    out = {}
    for r in rules:
        need = 2 if r.kind == "numerical" else 1
        ref_n = int(reference[r.column].notna().sum()) if r.column in reference.columns else 0
        cur_n = int(current[r.column].notna().sum()) if r.column in current.columns else 0
        if ref_n < need:
            out[r.column] = f"{ref_n} observed values in the reference"
        elif cur_n < need:
            out[r.column] = f"{cur_n} observed values in the window"
    return out
