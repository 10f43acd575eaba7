"""The model registry in Postgres: versions with their artifact, one champion, an append-only log.

Invariants (see docs/RELIABILITY.md):
* exactly one champion per pipeline at all times once a model was promoted (``registry.champions``
  has the pipeline as primary key, so there can never be two; a promotion is one transaction under
  an advisory lock, so readers see the old or the new champion, never none);
* every champion change writes exactly one ``registry.promotion_log`` row, in the same
  transaction; re-running a promotion that already happened changes nothing and logs nothing;
* a model is only ever loaded after its artifact's sha256 matches the registry
  (:func:`airtrain.artifacts.load_model`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from airtrain.db import Warehouse, ident, xact_lock
from airtrain.errors import PermanentError
from airtrain.faults import failpoint
from airtrain.spec import PipelineSpec

#: ``expected_champion`` default of :func:`promote`: no compare-and-swap (any champion may be replaced)
ANY_CHAMPION = object()


class RegistryError(PermanentError, RuntimeError):
    """A registry operation was refused (unknown version, no champion, ...)."""


class NoChampionError(RegistryError):
    """The pipeline has no champion yet."""


@dataclass(frozen=True)
class ModelVersion:
    pipeline: str
    version: int
    run_id: str
    estimator: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    artifact_sha256: str = ""
    artifact_format: str = "skops"


_COLS = "pipeline, version, run_id, estimator, params, metrics, lineage, artifact_sha256, artifact_format"


def _t(spec: PipelineSpec, table: str) -> sql.Identifier:
    return ident(spec.warehouse.registry_schema, table)


def _row_to_version(row: tuple[Any, ...]) -> ModelVersion:
    return ModelVersion(row[0], int(row[1]), row[2] or "", row[3] or "", row[4] or {}, row[5] or {},
                        row[6] or {}, row[7] or "", row[8] or "skops")


def register_version(
    wh: Warehouse,
    spec: PipelineSpec,
    *,
    artifact: bytes,
    artifact_sha256: str,
    artifact_format: str,
    run_id: str,
    estimator: str,
    params: dict[str, Any],
    lineage: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    spec_text: str | None = None,
) -> int:
    """Store a new model version and return its number.

    Idempotent: training on the same data (``lineage['data_hash']``) with the same estimator, params,
    code version and model-shaping spec (``lineage['model_spec_sha256']``: features, types, rules,
    target mapping, ...; :func:`airtrain.evolution.model_spec_sha256`) returns the version registered
    before instead of a new one. ``spec_text``: the spec it was trained under, stored with it.
    """
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "registry", spec.name)
        # Idempotent: the same data, estimator, params, code and spec give the same model (training is
        # seeded), so a retry or a re-run of the same date returns the version registered before.
        cur.execute(
            sql.SQL("SELECT version FROM {} WHERE pipeline = %s AND lineage->>'data_hash' = %s AND estimator = %s "
                    "AND params = %s::jsonb AND lineage->>'code_version' IS NOT DISTINCT FROM %s "
                    "AND lineage->>'model_spec_sha256' IS NOT DISTINCT FROM %s "
                    "ORDER BY version LIMIT 1").format(_t(spec, "model_versions")),
            (spec.name, lineage.get("data_hash"), estimator, json.dumps(params, default=str),
             lineage.get("code_version"), lineage.get("model_spec_sha256")),
        )
        prev = cur.fetchone()
        if prev is not None:
            return int(prev[0])
        cur.execute(sql.SQL("SELECT COALESCE(MAX(version), 0) + 1 FROM {} WHERE pipeline = %s").format(
            _t(spec, "model_versions")), (spec.name,))
        version = int(cur.fetchone()[0])
        from airtrain.artifacts import resolve_keys, sign

        signature = sign(resolve_keys(wh.artifact_keys), spec.name, version, artifact_sha256)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (pipeline, version, run_id, estimator, params, metrics, lineage, artifact, "
                "artifact_sha256, artifact_format, artifact_signature, spec_text) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(_t(spec, "model_versions")),
            (spec.name, version, run_id, estimator, json.dumps(params, default=str),
             json.dumps(metrics or {}, default=str), json.dumps(lineage, default=str), artifact,
             artifact_sha256, artifact_format, signature, spec_text),
        )
        return version


def update_metrics(wh: Warehouse, spec: PipelineSpec, version: int, metrics: dict[str, Any]) -> None:
    """Merge ``metrics`` into the version's metrics (jsonb ``||``)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET metrics = COALESCE(metrics, '{{}}'::jsonb) || %s::jsonb "
                    "WHERE pipeline = %s AND version = %s").format(_t(spec, "model_versions")),
            (json.dumps(metrics, default=str), spec.name, version),
        )
        if cur.rowcount != 1:
            raise RegistryError(f"{spec.name} has no model version {version}")


def get_version(wh: Warehouse, spec: PipelineSpec, version: int) -> ModelVersion:
    import psycopg2.errors

    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE pipeline = %s AND version = %s").format(
                sql.SQL(_COLS), _t(spec, "model_versions")), (spec.name, version))
            row = cur.fetchone()
    except psycopg2.errors.UndefinedTable:
        row = None  # the registry was never created: no version exists
    if row is None:
        raise RegistryError(f"{spec.name} has no model version {version}; see {spec.warehouse.registry_schema}"
                            f".model_versions for the versions that exist")
    return _row_to_version(row)


def list_versions(wh: Warehouse, spec: PipelineSpec) -> list[ModelVersion]:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} WHERE pipeline = %s ORDER BY version").format(
            sql.SQL(_COLS), _t(spec, "model_versions")), (spec.name,))
        return [_row_to_version(r) for r in cur.fetchall()]


def champion_version(wh: Warehouse, spec: PipelineSpec) -> int | None:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s").format(_t(spec, "champions")),
                    (spec.name,))
        row = cur.fetchone()
    return int(row[0]) if row else None


#: a version's training as_of from its lineage, as a date (NULL when missing or malformed); ``m`` = model_versions
_LINEAGE_AS_OF = sql.SQL("(CASE WHEN m.lineage->>'as_of' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' "
                         "THEN (m.lineage->>'as_of')::date END)")


def champion_as_of(wh: Warehouse, spec: PipelineSpec, day: Any) -> int | None:
    """The champion *for partition* ``day``: the version of the newest champion change (by log id)
    that is effective on or before ``day`` (``promotion_log.effective_on``; rows logged before that
    column existed count from their version's training as_of). None: no change is effective yet -
    every champion so far was trained on data after ``day``.

    What scores a date and what the monitor checks it against: a re-run or a backfill of an old date
    gets the model that was live for it, whatever was promoted since. For a pipeline that runs its
    dates in order it is the live champion (:func:`champion_version`)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT l.to_version FROM {l} l LEFT JOIN {m} m ON m.pipeline = l.pipeline AND m.version = l.to_version "
            "WHERE l.pipeline = %s AND COALESCE(l.effective_on, {asof}, '-infinity'::date) <= %s "
            "ORDER BY l.id DESC LIMIT 1").format(l=_t(spec, "promotion_log"), m=_t(spec, "model_versions"),
                                                 asof=_LINEAGE_AS_OF),
            (spec.name, day))
        row = cur.fetchone()
    return int(row[0]) if row else None


def first_effective_on(wh: Warehouse, spec: PipelineSpec) -> Any:
    """The first date any champion change is effective for (None: no champion was ever made)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT min(COALESCE(l.effective_on, {asof}, '-infinity'::date)) FROM {l} l LEFT JOIN {m} m "
            "ON m.pipeline = l.pipeline AND m.version = l.to_version WHERE l.pipeline = %s").format(
            l=_t(spec, "promotion_log"), m=_t(spec, "model_versions"), asof=_LINEAGE_AS_OF), (spec.name,))
        row = cur.fetchone()
    return row[0] if row else None


def get_champion(wh: Warehouse, spec: PipelineSpec) -> ModelVersion | None:
    v = champion_version(wh, spec)
    return get_version(wh, spec, v) if v is not None else None


def load_artifact(wh: Warehouse, spec: PipelineSpec, version: int) -> Any:
    """Load a version's model after verifying its signature, checksum, library versions and types."""
    from airtrain.artifacts import load_model, resolve_keys, verify_signature

    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT artifact, artifact_sha256, lineage, artifact_signature FROM {} WHERE pipeline = %s "
                    "AND version = %s").format(_t(spec, "model_versions")), (spec.name, version))
        row = cur.fetchone()
    if row is None:
        raise RegistryError(f"{spec.name} has no model version {version}")
    data, sha, lineage = bytes(row[0]), row[1], row[2] or {}
    verify_signature(resolve_keys(wh.artifact_keys), spec.name, version, sha, row[3])
    return load_model(data, sha, (lineage or {}).get("library_versions"))


def resign_artifacts(wh: Warehouse, spec: PipelineSpec, versions: list[int] | None = None) -> list[int]:
    """Sign (again) the artifacts of ``versions`` (default: all) with the newest configured key.

    For enabling signing on a warehouse whose artifacts predate it, and for retiring an old key
    (re-sign, then drop the old key). It trusts the rows as they are now: run it only on a
    warehouse you trust. Each artifact's checksum is verified against its bytes first."""
    from airtrain.artifacts import ArtifactSignatureError, resolve_keys, sha256, sign

    keys = resolve_keys(wh.artifact_keys)
    if not keys:
        raise ArtifactSignatureError("no artifact signing key configured: nothing to sign with")
    done = []
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "registry", spec.name)
        cur.execute(sql.SQL("SELECT version, artifact, artifact_sha256 FROM {} WHERE pipeline = %s "
                            "AND (%s::int[] IS NULL OR version = ANY(%s::int[])) ORDER BY version").format(
            _t(spec, "model_versions")), (spec.name, versions, versions))
        for version, data, sha in cur.fetchall():
            if sha256(bytes(data)) != sha:
                raise ArtifactSignatureError(f"{spec.name} v{version}: the artifact does not match its checksum; "
                                             "not signing it")
            cur.execute(sql.SQL("UPDATE {} SET artifact_signature = %s WHERE pipeline = %s AND version = %s").format(
                _t(spec, "model_versions")), (sign(keys, spec.name, version, sha), spec.name, version))
            done.append(int(version))
    return done


def promote(
    wh: Warehouse,
    spec: PipelineSpec,
    version: int,
    *,
    action: str,
    actor: str,
    reason: str,
    run_id: str,
    metrics: dict[str, Any] | None = None,
    expected_champion: int | None | object = ANY_CHAMPION,
    newer_only: bool = False,
    canary_decided_on: Any = None,
    triggered_by: str | None = None,
    effective_on: Any = None,
) -> dict[str, Any]:
    """Make ``version`` the champion: one transaction under an advisory lock, logged once - a
    compare-and-swap.

    Returns ``{"changed": bool, "from_version": int | None, "to_version": int, "promotion_id": ...}``,
    plus ``"refused": <reason>`` when the swap was refused. Promoting the version that already is
    the champion changes nothing (safe to retry: checked first). Then, under the lock, against the
    champion read in this transaction:

    * ``expected_champion`` (the champion the decision was made against: the one the challenger
      was evaluated against, or the one a rollback was planned against; ``None`` = no champion)
      must still be the champion, else the swap is refused - the decision is stale;
    * ``newer_only``: a version trained as of an earlier date than the champion is refused (an
      out-of-order backfill never replaces a newer champion), and so is a version rejected by a
      rollback or any version while automatic promotions are held (:func:`automatic_refusal`;
      ``"refused_kind"`` says which).

    ``actor`` made the change (``airtrain:gate`` for an automatic promotion, ``user:<name>`` for a
    person's); ``triggered_by`` is who or what started the run (``promotion_log.triggered_by``). A
    rollback marks the version rolled back from ``rejected``; a rollback to, or a forced promotion
    of, a rejected version clears its rejection - both in this transaction (:func:`_status_changes`).

    A running canary (``registry.rollouts``) is closed in the same transaction: graduated when its
    candidate became the champion, aborted otherwise (:func:`airtrain.canary.close_on_champion_change`;
    ``canary_decided_on`` is the date the decision is recorded for).

    ``effective_on``: the first partition date the change is for (:func:`champion_as_of`) - the run's
    date for a rollback, the day after the decision for a canary the monitor graduated; default the
    version's training as_of (a promotion: it scores the dates from the one it was trained as of).
    """
    if action not in {"promote", "force_promote", "rollback"}:
        raise ValueError(f"unknown promotion action {action!r}")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "promote", spec.name)
        cur.execute(sql.SQL("SELECT 1 FROM {} WHERE pipeline = %s AND version = %s").format(
            _t(spec, "model_versions")), (spec.name, version))
        if cur.fetchone() is None:
            raise RegistryError(f"{spec.name} has no model version {version}; nothing was changed")
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s FOR UPDATE").format(
            _t(spec, "champions")), (spec.name,))
        row = cur.fetchone()
        current = int(row[0]) if row else None
        if current == version:
            return {"changed": False, "from_version": current, "to_version": version, "promotion_id": None}
        refused = None
        if expected_champion is not ANY_CHAMPION and expected_champion != current:
            refused = (f"champion changed: making v{version} the champion was decided against "
                       f"{_v(expected_champion)}, but the champion is {_v(current)} now (changed meanwhile by "
                       f"another run); v{version} was not made the champion - re-run to decide against "
                       f"{_v(current)}")
        elif newer_only and current is not None:
            refused = out_of_order(cur, spec, version, current)
        kind = None
        if not refused and newer_only and (found := automatic_refusal(cur, spec, version)):
            kind, refused = found
        if refused:
            return {"changed": False, "from_version": current, "to_version": version, "promotion_id": None,
                    "refused": refused, **({"refused_kind": kind} if kind else {})}
        cur.execute(
            sql.SQL("INSERT INTO {} (pipeline, from_version, to_version, action, actor, reason, metrics, run_id, "
                    "triggered_by, effective_on) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, COALESCE(%s::date, "
                    "(SELECT {} FROM {} m WHERE m.pipeline = %s AND m.version = %s))) RETURNING id").format(
                _t(spec, "promotion_log"), _LINEAGE_AS_OF, _t(spec, "model_versions")),
            (spec.name, current, version, action, actor, reason, json.dumps(metrics or {}, default=str), run_id,
             triggered_by, effective_on, spec.name, version),
        )
        promotion_id = int(cur.fetchone()[0])
        _status_changes(cur, spec, action=action, from_version=current, to_version=version, actor=actor,
                        reason=reason, run_id=run_id, promotion_id=promotion_id)
        cur.execute(
            sql.SQL("INSERT INTO {} (pipeline, version, promoted_at, promotion_id) VALUES (%s, %s, now(), %s) "
                    "ON CONFLICT (pipeline) DO UPDATE SET version = EXCLUDED.version, "
                    "promoted_at = EXCLUDED.promoted_at, promotion_id = EXCLUDED.promotion_id"
                    ).format(_t(spec, "champions")),
            (spec.name, version, promotion_id),
        )
        from airtrain.canary import close_on_champion_change

        close_on_champion_change(cur, spec, new_champion=version, action=action, actor=actor, reason=reason,
                                 run_id=run_id, promotion_id=promotion_id, decided_on=canary_decided_on)
        failpoint(f"{_step(action)}.before_commit")
    failpoint(f"{_step(action)}.after_commit")
    return {"changed": True, "from_version": current, "to_version": version, "promotion_id": promotion_id}


def _v(version: Any) -> str:
    return "no champion" if version is None else f"v{version}"


def out_of_order(cur: Any, spec: PipelineSpec, version: int, champion: int) -> str | None:
    """Why ``version`` must not replace ``champion`` automatically: it was trained as of an earlier
    date (an out-of-order backfill) - or None. Runs on the caller's cursor (inside its transaction)."""
    cur.execute(sql.SQL("SELECT version, lineage->>'as_of' FROM {} WHERE pipeline = %s AND version IN (%s, %s)"
                        ).format(_t(spec, "model_versions")), (spec.name, version, champion))
    as_of = dict(cur.fetchall())
    mine, theirs = as_of.get(version), as_of.get(champion)
    if mine and theirs and str(mine) < str(theirs):
        return (f"out of order: trained as of {mine}, older than the champion v{champion} (as of {theirs}); an "
                "out-of-order backfill never replaces a newer champion (force_promote with a reason to override)")
    return None


def _step(action: str) -> str:
    """The failpoint prefix of a champion change (a rollback is its own step in the DAG)."""
    return "rollback" if action == "rollback" else "promote"


def promotion_log(wh: Warehouse, spec: PipelineSpec) -> list[dict[str, Any]]:
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT id, from_version, to_version, action, actor, reason, run_id, created_at, effective_on "
                    "FROM {} WHERE pipeline = %s ORDER BY id").format(_t(spec, "promotion_log")), (spec.name,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------------------------
# Rejected versions, promotion holds and per-run gate decisions (issue 20 items 5, 6, 8)
# ---------------------------------------------------------------------------------------------

#: the actor of an automatic promotion: the gate decided (who started the run is ``triggered_by``)
GATE_ACTOR = "airtrain:gate"


def _one(cur: Any, query: sql.Composable, params: tuple) -> dict[str, Any] | None:
    cur.execute(query, params)
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None


def rejection(cur: Any, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """The standing rejection of ``version`` (its newest ``registry.version_status`` row says
    ``rejected``: who, when, why, which run and promotion), or None. On the caller's cursor."""
    row = _one(cur, sql.SQL("SELECT status, actor, reason, run_id, promotion_id, created_at FROM {} "
                            "WHERE pipeline = %s AND version = %s ORDER BY id DESC LIMIT 1").format(
        _t(spec, "version_status")), (spec.name, version))
    return row if row and row["status"] == "rejected" else None


def version_rejection(wh: Warehouse, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """:func:`rejection` in its own transaction."""
    with wh.connect() as conn, conn.cursor() as cur:
        return rejection(cur, spec, version)


def rejected_reason(spec: PipelineSpec, version: int, rej: dict[str, Any]) -> str:
    when = str(rej.get("created_at") or "")[:16]
    return (f"v{version} was rejected by {rej['actor']} on {when} ({rej['reason']}); it is not promoted again "
            f"automatically, also when a retrain reproduces it (same data, parameters and code) - force_promote "
            f"with a reason brings it back")


def hold_state(cur: Any, spec: PipelineSpec) -> dict[str, Any] | None:
    """The standing hold on automatic promotions of the pipeline (its newest ``registry.promotion_holds``
    row is ``hold``: who, since when, why), or None. On the caller's cursor."""
    row = _one(cur, sql.SQL("SELECT id, action, actor, reason, run_id, created_at FROM {} WHERE pipeline = %s "
                            "ORDER BY id DESC LIMIT 1").format(_t(spec, "promotion_holds")), (spec.name,))
    return row if row and row["action"] == "hold" else None


def promotion_hold(wh: Warehouse, spec: PipelineSpec) -> dict[str, Any] | None:
    """:func:`hold_state` in its own transaction (None also before the table exists)."""
    import psycopg2.errors

    try:
        with wh.connect() as conn, conn.cursor() as cur:
            return hold_state(cur, spec)
    except psycopg2.errors.UndefinedTable:
        return None


def held_reason(spec: PipelineSpec, hold: dict[str, Any]) -> str:
    since = str(hold.get("created_at") or "")[:16]
    return (f"automatic promotions of {spec.name} are held since {since} by {hold['actor']} ({hold['reason']}); "
            "release the hold (promotion_hold: release) to promote again, or force_promote with a reason")


def automatic_refusal(cur: Any, spec: PipelineSpec, version: int) -> tuple[str, str] | None:
    """Why ``version`` must not become the champion (or the canary candidate) without a person's
    explicit override: ``("rejected", why)`` - a rollback rejected it - or ``("held", why)`` -
    automatic promotions of the pipeline are held - or None. Runs under the promotion lock."""
    rej = rejection(cur, spec, version)
    if rej is not None:
        return "rejected", rejected_reason(spec, version, rej)
    hold = hold_state(cur, spec)
    if hold is not None:
        return "held", held_reason(spec, hold)
    return None


def _status_changes(cur: Any, spec: PipelineSpec, *, action: str, from_version: int | None, to_version: int,
                    actor: str, reason: str, run_id: str, promotion_id: int) -> None:
    """Inside :func:`promote`'s transaction: a rollback rejects the version rolled back from; a
    rollback to, or a forced promotion of, a rejected version clears the rejection (both logged)."""
    table = _t(spec, "version_status")
    insert = sql.SQL("INSERT INTO {} (pipeline, version, status, actor, reason, run_id, promotion_id) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(table)
    if action == "rollback" and from_version is not None and rejection(cur, spec, from_version) is None:
        cur.execute(insert, (spec.name, from_version, "rejected", actor, reason, run_id, promotion_id))
    if action in ("rollback", "force_promote") and rejection(cur, spec, to_version) is not None:
        cur.execute(insert, (spec.name, to_version, "cleared", actor, reason, run_id, promotion_id))


def version_status_log(wh: Warehouse, spec: PipelineSpec, version: int) -> list[dict[str, Any]]:
    """Every status change of ``version`` (rejected / cleared), oldest first."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, status, actor, reason, run_id, promotion_id, created_at FROM {} "
                            "WHERE pipeline = %s AND version = %s ORDER BY id").format(_t(spec, "version_status")),
                    (spec.name, version))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def set_promotion_hold(wh: Warehouse, spec: PipelineSpec, action: str, *, actor: str, reason: str,
                       run_id: str) -> dict[str, Any]:
    """Hold (``action="hold"``) or release automatic promotions of the pipeline: one row in the
    append-only ``registry.promotion_holds`` when the state changes, under the promotion lock.

    While held, a challenger that passes the gate is recorded as held and not promoted (nor started
    as a canary, nor sent for approval); ``force_promote`` and ``rollback_version`` still work. A
    retry of the same run finds its own row; asking for the state the pipeline is already in changes
    nothing and says so."""
    if action not in ("hold", "release"):
        raise ValueError(f"unknown promotion hold action {action!r} (hold or release)")
    table = _t(spec, "promotion_holds")
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "promote", spec.name)
        mine = _one(cur, sql.SQL("SELECT id, action, actor, reason, run_id, created_at FROM {} WHERE pipeline = %s "
                                 "AND run_id = %s ORDER BY id DESC LIMIT 1").format(table), (spec.name, run_id))
        if mine is not None:  # a retry of this run: its change is already committed
            return {"changed": True, "held": mine["action"] == "hold", **_jsonable(mine)}
        current = hold_state(cur, spec)
        if (current is not None) == (action == "hold"):
            state = (f"already held since {str(current['created_at'])[:16]} by {current['actor']} "
                     f"({current['reason']})") if current else "not held"
            return {"changed": False, "held": current is not None,
                    "message": f"automatic promotions of {spec.name} are {state}; nothing changed"}
        row = _one(cur, sql.SQL("INSERT INTO {} (pipeline, action, actor, reason, run_id) VALUES (%s, %s, %s, %s, %s) "
                                "RETURNING id, action, actor, reason, run_id, created_at").format(table),
                   (spec.name, action, actor, reason, run_id))
    what = "held" if action == "hold" else "released: the gate promotes again"
    return {"changed": True, "held": action == "hold", **_jsonable(row),
            "message": f"automatic promotions of {spec.name} {what} (by {actor}: {reason})"}


def promotion_holds(wh: Warehouse, spec: PipelineSpec, limit: int = 20) -> list[dict[str, Any]]:
    """The newest hold / release rows of the pipeline (for the reports page and readers)."""
    import psycopg2.errors

    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT id, action, actor, reason, run_id, created_at FROM {} WHERE pipeline = %s "
                                "ORDER BY id DESC LIMIT %s").format(_t(spec, "promotion_holds")), (spec.name, limit))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    except psycopg2.errors.UndefinedTable:
        return []


def record_gate_decision(wh: Warehouse, spec: PipelineSpec, version: int, gate: dict[str, Any], *, run_id: str,
                         champion_version: int | None, outcome: str | None = None) -> None:
    """This run's gate decision on ``version`` as its own row of ``registry.gate_decisions`` (key:
    pipeline, run, version): a later run that re-derives the same version adds its own row instead of
    overwriting this one; a retry of the same run replaces its own."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {} AS g (pipeline, run_id, version, champion_version, passed, refused, outcome, reason, "
            "decision) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (pipeline, run_id, version) DO UPDATE "
            "SET champion_version = EXCLUDED.champion_version, passed = EXCLUDED.passed, refused = EXCLUDED.refused, "
            "outcome = COALESCE(EXCLUDED.outcome, g.outcome), reason = EXCLUDED.reason, "
            "decision = EXCLUDED.decision, updated_at = now()").format(_t(spec, "gate_decisions")),
            (spec.name, run_id, version, champion_version, gate.get("passed"), gate.get("refused"), outcome,
             str(gate.get("reason") or ""), json.dumps(gate, default=str)))


def record_gate_outcome(wh: Warehouse, spec: PipelineSpec, *, run_id: str, version: int, outcome: str) -> None:
    """What became of a run's gate decision later (an approval answered, ...)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} SET outcome = %s, updated_at = now() WHERE pipeline = %s AND run_id = %s "
                            "AND version = %s").format(_t(spec, "gate_decisions")), (outcome, spec.name, run_id, version))


def gate_decisions(wh: Warehouse, spec: PipelineSpec, version: int) -> list[dict[str, Any]]:
    """Every run's gate decision on ``version``, oldest first."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT run_id, champion_version, passed, refused, outcome, reason, decision, created_at, "
                            "updated_at FROM {} WHERE pipeline = %s AND version = %s ORDER BY created_at, run_id").format(
            _t(spec, "gate_decisions")), (spec.name, version))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any]:
    return json.loads(json.dumps(row or {}, default=str))
