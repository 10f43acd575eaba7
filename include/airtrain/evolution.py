"""Evolving the spec of a running pipeline: a declared policy for every change, never a silent
half-change (docs/CHANGING_A_SPEC.md).

* **Schema** (:func:`plan_schema`, used by ``airtrain migrate`` and by ``prepare``'s verify): a new
  feature adds a column (NULL in older rows); an int → float feature is widened in place
  (``ALTER COLUMN … TYPE double precision`` in the features and drift-reference tables; a binary
  target becoming a regression one likewise in the labels table); any other type change (of a
  feature, the target or the entity key) is refused, naming the column, both types and the procedure. A feature removed from
  the spec while a *live* version (the champion, a running canary's arms) uses it as a model input
  is refused, naming the versions: keep it with ``model_input: false`` until they are retired.
  Columns are never dropped.
* **Switching versions** (:func:`score_problems`): a rollback checks, before the champion changes,
  that the version can score - every model input is still in the spec, is a column of the
  features table and has values on the date it will score.
* **Training** (:func:`unobserved_inputs`): a model input without one observed value in the
  training window (a feature added after the window's days) is dropped and recorded, never
  trained as all-NULL.
* **Drift** (:func:`under_current_rules`, :func:`rule_changes`, :func:`drift_skips`): the
  reference is filtered by the current row rules, so a tightened rule is not read as drift;
  rule changes since the champion was trained are recorded; every column the check skips is named.
* **Versions** (:func:`model_spec_sha256`, :func:`spec_text`): the registry reuses a version only
  when everything that shapes the model is the same, and stores the spec each version was
  trained under.

No Airflow import; pandas only inside the functions that take frames.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml
from psycopg2 import sql

from airtrain.db import Warehouse, ident
from airtrain.errors import PermanentError
from airtrain.spec import FeatureSpec, PipelineSpec

DOC = "docs/CHANGING_A_SPEC.md"
#: (type in the warehouse, type the spec asks for) changed in place by ``airtrain migrate``
WIDENINGS = frozenset({("bigint", "double precision"), ("smallint", "double precision")})
#: the spec type of each column type (for messages)
SPEC_TYPES = {"bigint": "int", "double precision": "float", "text": "category", "boolean": "bool"}


class SpecChangeError(PermanentError, RuntimeError):
    """A spec change that would break the running pipeline; nothing was changed."""


class VersionCannotScoreError(PermanentError, RuntimeError):
    """A model version cannot score under the current spec and data: it was not switched to."""


# ---------------------------------------------------------------------------------------------
# schema changes (airtrain migrate, prepare's verify)
# ---------------------------------------------------------------------------------------------


@dataclass
class SchemaPlan:
    """What bringing the warehouse to the spec changes, and what it refuses."""

    widen: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # schema, table, column, old, new
    refused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # feature columns the spec no longer lists (kept)

    def describe(self) -> list[str]:
        return ([f"widen {s}.{t}.{c} {old} -> {new}" for s, t, c, old, new in self.widen]
                + [f"keep {c} (no longer in the spec; the column stays, NULL for new dates)" for c in self.removed])


def _types(cur: Any, schema: str, table: str) -> dict[str, str]:
    cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s", (schema, table))
    return dict(cur.fetchall())


def _exists(cur: Any, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',))
    return cur.fetchone()[0] is not None


def live_versions(cur: Any, spec: PipelineSpec) -> dict[int, str]:
    """The versions that score now or will without a new decision: the champion and a running
    canary's candidate ({version: role})."""
    reg = spec.warehouse.registry_schema
    out: dict[int, str] = {}
    if _exists(cur, reg, "rollouts"):
        cur.execute(sql.SQL("SELECT candidate_version FROM {} WHERE pipeline = %s AND status = 'running'").format(
            ident(reg, "rollouts")), (spec.name,))
        out.update({int(r[0]): "canary candidate" for r in cur.fetchall()})
    if _exists(cur, reg, "champions"):
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s").format(ident(reg, "champions")),
                    (spec.name,))
        out.update({int(r[0]): "champion" for r in cur.fetchall()})
    return out


def _inputs(cur: Any, spec: PipelineSpec, versions: list[int]) -> dict[int, list[str] | None]:
    """Each version's model inputs from its lineage (None: not recorded)."""
    if not versions:
        return {}
    cur.execute(sql.SQL("SELECT version, lineage->'model_inputs' FROM {} WHERE pipeline = %s "
                        "AND version = ANY(%s)").format(ident(spec.warehouse.registry_schema, "model_versions")),
                (spec.name, versions))
    return {int(v): (list(i) if isinstance(i, list) else None) for v, i in cur.fetchall()}


def versions_needing(cur: Any, spec: PipelineSpec, columns: list[str]) -> dict[str, list[str]]:
    """{column: ["v3 (champion)", ...]} for the live versions that use a column as a model input
    (a version whose inputs were not recorded counts as using every column)."""
    live = live_versions(cur, spec)
    inputs = _inputs(cur, spec, sorted(live))
    out: dict[str, list[str]] = {}
    for col in columns:
        users = [f"v{v} ({role})" for v, role in sorted(live.items())
                 if inputs.get(v) is None or col in (inputs.get(v) or [])]
        if users:
            out[col] = users
    return out


def plan_schema(cur: Any, spec: PipelineSpec) -> SchemaPlan:
    """Compare the warehouse's features table with the spec (inside the caller's transaction)."""
    from airtrain.schema import feature_sql_type, key_sql_type, target_sql_type

    plan = SchemaPlan()
    fs, ft = spec.table("features")
    have = _types(cur, fs, ft)
    if not have:
        return plan  # first migration: nothing to compare with
    ms, mt = spec.table("reference")
    ref = _types(cur, ms, mt)
    for f in spec.features:
        old, new = have.get(f.name), feature_sql_type(f)
        if old is None or old == new:
            continue
        if (old, new) in WIDENINGS:
            plan.widen.append((fs, ft, f.name, old, new))
            if ref.get(f.name) == old:
                plan.widen.append((ms, mt, f.name, old, new))
            continue
        plan.refused.append(
            f"feature '{f.name}': {fs}.{ft}.{f.name} is {old} ({SPEC_TYPES.get(old, old)}) in the warehouse but the "
            f"spec says {f.type} ({new}). Only int -> float is changed in place (every stored value stays valid); "
            f"for any other type add the new one as a new feature with its own name (with 'since: <first date>'), "
            f"keep the old one with 'model_input: false' until no live version uses it, then remove it "
            f"({DOC}, 'Changing a feature's type')")
    key_old, key_new = have.get(spec.entity_key), key_sql_type(spec)
    if key_old is not None and key_old != key_new:
        plan.refused.append(
            f"entity_key '{spec.entity_key}' is {key_old} in the warehouse but entity_key_type says {key_new}: every "
            f"table of the pipeline is keyed by it (features, labels, predictions, references). Keep the type, or "
            f"start a new pipeline (a new name) with the new key ({DOC}, 'Changing the target mapping or the key')")
    ls, lt = spec.table("labels")
    label_old, label_new = _types(cur, ls, lt).get(spec.target.name), target_sql_type(spec)
    if label_old is not None and label_old != label_new:
        if (label_old, label_new) in WIDENINGS:
            plan.widen.append((ls, lt, spec.target.name, label_old, label_new))
        else:
            plan.refused.append(
                f"target '{spec.target.name}': {ls}.{lt}.{spec.target.name} is {label_old} in the warehouse but a "
                f"{spec.target.task} target needs {label_new}; the stored labels cannot be narrowed. Start a new "
                f"pipeline (a new name) for the new task ({DOC}, 'Changing the target mapping or the key')")
    reserved = {spec.entity_key, spec.date_column, "_run_id", "_validated_at"}
    plan.removed = sorted(c for c in have if c not in reserved and c not in spec.feature_names)
    for col, users in versions_needing(cur, spec, plan.removed).items():
        plan.refused.append(
            f"feature '{col}' was removed from the spec, but {', '.join(users)} use(s) it as a model input: it "
            f"could no longer score. Keep the feature in the spec with 'model_input: false' (still ingested and "
            f"validated, not used by new models) until no live version needs it - a champion trained without it, "
            f"a decided canary - then remove it ({DOC}, 'Removing a feature')")
    return plan


def refuse(spec: PipelineSpec, plan: SchemaPlan) -> None:
    """Raise :class:`SpecChangeError` naming every refused change (the caller's transaction rolls back)."""
    if plan.refused:
        raise SpecChangeError(f"{spec.name}: the spec change was refused, nothing was changed:\n  - "
                              + "\n  - ".join(plan.refused))


def apply_widenings(cur: Any, plan: SchemaPlan) -> list[str]:
    """ALTER COLUMN … TYPE for the planned widenings (caller's transaction); returns what changed."""
    done = []
    for schema, table, col, old, new in plan.widen:
        cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(ident(schema, table), ident(col),
                                                                            sql.SQL(new)))
        done.append(f"{schema}.{table}.{col} {old} -> {new}")
    return done


def pending(wh: Warehouse, spec: PipelineSpec) -> SchemaPlan:
    """The plan of the next ``airtrain migrate`` (read only; for ``prepare``'s message)."""
    with wh.connect() as conn, conn.cursor() as cur:
        return plan_schema(cur, spec)


# ---------------------------------------------------------------------------------------------
# can a version score? (before a rollback switches to it)
# ---------------------------------------------------------------------------------------------


def score_problems(wh: Warehouse, spec: PipelineSpec, version: int, as_of: dt.date | None = None) -> list[str]:
    """Why ``version`` cannot score under the current spec ([] = it can): a model input no longer in
    the spec, not a column of the features table, or - on ``as_of`` (default: the newest validated
    date) - without a single value in that date's rows."""
    fs, ft = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        inputs = _inputs(cur, spec, [version]).get(version)
        if inputs is None:
            return []  # not recorded (a version made before lineage kept its inputs): nothing to check
        have = _types(cur, fs, ft)
        problems = []
        for c in inputs:
            if c not in spec.feature_names:
                problems.append(f"its model input '{c}' is no longer in the spec (validation does not fill it)")
            elif c not in have:
                problems.append(f"its model input '{c}' is not a column of {fs}.{ft} (run airtrain migrate)")
        if problems or not have:
            return problems
        if as_of is None:
            cur.execute(sql.SQL("SELECT max({}) FROM {}").format(ident(spec.date_column), ident(fs, ft)))
            as_of = cur.fetchone()[0]
        feats = {f.name: f for f in spec.features}
        check = [c for c in inputs if as_of is not None and feats[c].active_on(as_of)]
        if not check:
            return []
        cur.execute(sql.SQL("SELECT count(*), {} FROM {} WHERE {} = %s").format(
            sql.SQL(", ").join(sql.SQL("count({})").format(ident(c)) for c in check), ident(fs, ft),
            ident(spec.date_column)), (as_of,))
        rows, *counts = cur.fetchone()
    if rows:
        problems += [f"its model input '{c}' has no value in the {rows} rows of {as_of}"
                     for c, n in zip(check, counts, strict=True) if n == 0]
    return problems


def require_can_score(wh: Warehouse, spec: PipelineSpec, version: int, as_of: dt.date | None = None,
                      *, what: str = "switching to it") -> None:
    problems = score_problems(wh, spec, version, as_of)
    if problems:
        raise VersionCannotScoreError(
            f"{spec.name} v{version} cannot score under the current spec, so {what} was refused (the champion is "
            f"unchanged): " + "; ".join(problems) + f". Pick a version trained on today's features ({DOC})")


# ---------------------------------------------------------------------------------------------
# training: model inputs without observed values
# ---------------------------------------------------------------------------------------------


def unobserved_inputs(df: Any, spec: PipelineSpec) -> list[str]:
    """The model inputs without a single non-null value in ``df`` (the training rows)."""
    return [c for c in spec.model_feature_names if c not in df.columns or int(df[c].notna().sum()) == 0]


def without_inputs(spec: PipelineSpec, names: list[str]) -> PipelineSpec:
    """``spec`` with ``names`` no longer model inputs (kept as columns, like ``model_input: false``)."""
    drop = set(names)
    return spec.model_copy(update={"features": [f.model_copy(update={"model_input": False}) if f.name in drop
                                                else f for f in spec.features]})


# ---------------------------------------------------------------------------------------------
# drift: the reference under the current rules, rule changes, skipped columns
# ---------------------------------------------------------------------------------------------


def _rule_mask(df: Any, f: FeatureSpec, dates: Any) -> Any:
    """Rows of ``df`` that the feature's current row rules would reject."""
    import pandas as pd

    col = df[f.name]
    bad = pd.Series(False, index=df.index)
    active = dates.map(f.active_on) if (f.since or f.until) else pd.Series(True, index=df.index)
    if not f.nullable:
        bad |= col.isna() & active
    if f.min is not None or f.max is not None:
        num = pd.to_numeric(col, errors="coerce")
        if f.min is not None:
            bad |= num.notna() & (num < f.min)
        if f.max is not None:
            bad |= num.notna() & (num > f.max)
    if f.allowed:
        bad |= col.notna() & ~col.astype("object").isin(list(f.allowed))
    return bad


def under_current_rules(reference: Any, spec: PipelineSpec) -> tuple[Any, dict[str, int]]:
    """The reference rows the current spec's row rules accept (not-null, min/max, allowed), and how
    many each feature's rules excluded. The reference was validated under the rules of its day: a
    tightened rule would otherwise compare a filtered window with an unfiltered reference. Rules with
    ``on_fail: warn`` keep their failing rows in the features table (and in every window), so they
    filter nothing here."""
    import pandas as pd

    if reference.empty:
        return reference, {}
    dates = pd.to_datetime(reference[spec.date_column]).dt.date
    bad = pd.Series(False, index=reference.index)
    excluded: dict[str, int] = {}
    for f in spec.features:
        if f.name not in reference.columns or f.on_fail == "warn":
            continue
        mask = _rule_mask(reference, f, dates)
        if int(mask.sum()):
            excluded[f.name] = int(mask.sum())
        bad |= mask
    return reference.loc[~bad].reset_index(drop=True), excluded


RULE_KEYS = ("type", "nullable", "min", "max", "allowed", "since", "until", "model_input")


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def rule_changes(old: dict[str, Any] | None, spec: PipelineSpec) -> dict[str, list[str]]:
    """{feature: ["max 500 -> 200", ...]} between the spec a version was trained under (``old``, the
    stored spec as a mapping) and ``spec``; a feature added or removed since is listed too."""
    if not old:
        return {}
    before: dict[str, FeatureSpec] = {}
    for item in old.get("features") or []:
        try:
            f = FeatureSpec.model_validate(item)
        except ValueError:
            continue  # written by another airtrain version: not comparable
        before[f.name] = f
    out: dict[str, list[str]] = {}
    for f in spec.features:
        b = before.get(f.name)
        if b is None:
            out[f.name] = ["added to the spec"]
            continue
        diffs = []
        for k in RULE_KEYS:
            x, y = getattr(b, k), getattr(f, k)
            if x != y:
                diffs.append(f"{k} {_num(x) if x is not None else 'unset'} -> {_num(y) if y is not None else 'unset'}")
        if diffs:
            out[f.name] = diffs
    for name in before:
        if name not in spec.feature_names:
            out[name] = ["removed from the spec"]
    return out


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


# ---------------------------------------------------------------------------------------------
# the spec a version was trained under
# ---------------------------------------------------------------------------------------------


def version_text(wh: Warehouse, spec: PipelineSpec, version: int) -> str | None:
    """The spec text stored with ``version`` (None: not stored - a version older than that, or a
    warehouse not migrated since specs were stored with versions)."""
    import psycopg2.errors

    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT spec_text FROM {} WHERE pipeline = %s AND version = %s").format(
                ident(spec.warehouse.registry_schema, "model_versions")), (spec.name, version))
            row = cur.fetchone()
    except psycopg2.errors.UndefinedColumn:
        return None
    return row[0] if row and row[0] else None


def version_spec(wh: Warehouse, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """The spec ``version`` was trained under, as a mapping (None: not stored - an older version)."""
    text = version_text(wh, spec, version)
    data = yaml.safe_load(text) if text else None
    return data if isinstance(data, dict) else None
