"""Can a model version score under the current spec and data? Checked before a rollback switches to it
(and by the run's parameter check): every model input is still in the spec, is a column of the
features table and has values on the date it will score.
"""

from __future__ import annotations

import datetime as dt

from psycopg2 import sql

from airtrain.errors import PermanentError
from airtrain.registry.versions import model_inputs
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident
from airtrain.warehouse.ddl import DOC, column_types


class VersionCannotScoreError(PermanentError, RuntimeError):
    """A model version cannot score under the current spec and data: it was not switched to."""


def score_problems(wh: Warehouse, spec: PipelineSpec, version: int, as_of: dt.date | None = None) -> list[str]:
    """Why ``version`` cannot score under the current spec ([] = it can): a model input no longer in
    the spec, not a column of the features table, or - on ``as_of`` (default: the newest validated
    date) - without a single value in that date's rows."""
    fs, ft = spec.table("features")
    with wh.connect() as conn, conn.cursor() as cur:
        inputs = model_inputs(cur, spec, [version]).get(version)
        if inputs is None:
            return []  # not recorded (a version made before lineage kept its inputs): nothing to check
        have = column_types(cur, fs, ft)
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
