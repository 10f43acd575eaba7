"""Model versions in the registry: each trained model with its artifact (verified before every load:
signature, checksum, library versions, trusted types), parameters, metrics, lineage and the spec it
was trained under. Registering the same training again returns the version registered before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg2.errors
import yaml
from psycopg2 import sql

from airtrain.errors import PermanentError
from airtrain.model.artifacts import (
    ArtifactSignatureError,
    load_model,
    resolve_keys,
    sha256,
    sign,
    verify_signature,
)
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident, xact_lock
from airtrain.warehouse.ddl import table_exists


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


def registry_table(spec: PipelineSpec, table: str) -> sql.Identifier:
    """The quoted name of a registry table of ``spec`` (``<registry_schema>.<table>``)."""
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
    target mapping, ...; :func:`airtrain.spec.model_spec_sha256`) returns the version registered
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
                    "ORDER BY version LIMIT 1").format(registry_table(spec, "model_versions")),
            (spec.name, lineage.get("data_hash"), estimator, json.dumps(params, default=str),
             lineage.get("code_version"), lineage.get("model_spec_sha256")),
        )
        prev = cur.fetchone()
        if prev is not None:
            return int(prev[0])
        cur.execute(sql.SQL("SELECT COALESCE(MAX(version), 0) + 1 FROM {} WHERE pipeline = %s").format(
            registry_table(spec, "model_versions")), (spec.name,))
        version = int(cur.fetchone()[0])

        signature = sign(resolve_keys(wh.artifact_keys), spec.name, version, artifact_sha256)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (pipeline, version, run_id, estimator, params, metrics, lineage, artifact, "
                "artifact_sha256, artifact_format, artifact_signature, spec_text) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(registry_table(spec, "model_versions")),
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
                    "WHERE pipeline = %s AND version = %s").format(registry_table(spec, "model_versions")),
            (json.dumps(metrics, default=str), spec.name, version),
        )
        if cur.rowcount != 1:
            raise RegistryError(f"{spec.name} has no model version {version}")


def get_version(wh: Warehouse, spec: PipelineSpec, version: int) -> ModelVersion:
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE pipeline = %s AND version = %s").format(
                sql.SQL(_COLS), registry_table(spec, "model_versions")), (spec.name, version))
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
            sql.SQL(_COLS), registry_table(spec, "model_versions")), (spec.name,))
        return [_row_to_version(r) for r in cur.fetchall()]


def load_artifact(wh: Warehouse, spec: PipelineSpec, version: int) -> Any:
    """Load a version's model after verifying its signature, checksum, library versions and types."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT artifact, artifact_sha256, lineage, artifact_signature FROM {} WHERE pipeline = %s "
                    "AND version = %s").format(registry_table(spec, "model_versions")), (spec.name, version))
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
    keys = resolve_keys(wh.artifact_keys)
    if not keys:
        raise ArtifactSignatureError("no artifact signing key configured: nothing to sign with")
    done = []
    with wh.connect() as conn, conn.cursor() as cur:
        xact_lock(cur, "registry", spec.name)
        cur.execute(sql.SQL("SELECT version, artifact, artifact_sha256 FROM {} WHERE pipeline = %s "
                            "AND (%s::int[] IS NULL OR version = ANY(%s::int[])) ORDER BY version").format(
            registry_table(spec, "model_versions")), (spec.name, versions, versions))
        for version, data, sha in cur.fetchall():
            if sha256(bytes(data)) != sha:
                raise ArtifactSignatureError(f"{spec.name} v{version}: the artifact does not match its checksum; "
                                             "not signing it")
            cur.execute(sql.SQL("UPDATE {} SET artifact_signature = %s WHERE pipeline = %s AND version = %s").format(
                registry_table(spec, "model_versions")), (sign(keys, spec.name, version, sha), spec.name, version))
            done.append(int(version))
    return done


def version_text(wh: Warehouse, spec: PipelineSpec, version: int) -> str | None:
    """The spec text stored with ``version`` (None: not stored - a version older than that, or a
    warehouse not migrated since specs were stored with versions)."""
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


def live_versions(cur: Any, spec: PipelineSpec) -> dict[int, str]:
    """The versions that score now or will without a new decision: the champion and a running
    canary's candidate ({version: role})."""
    reg = spec.warehouse.registry_schema
    out: dict[int, str] = {}
    if table_exists(cur, reg, "rollouts"):
        cur.execute(sql.SQL("SELECT candidate_version FROM {} WHERE pipeline = %s AND status = 'running'").format(
            ident(reg, "rollouts")), (spec.name,))
        out.update({int(r[0]): "canary candidate" for r in cur.fetchall()})
    if table_exists(cur, reg, "champions"):
        cur.execute(sql.SQL("SELECT version FROM {} WHERE pipeline = %s").format(ident(reg, "champions")),
                    (spec.name,))
        out.update({int(r[0]): "champion" for r in cur.fetchall()})
    return out


def model_inputs(cur: Any, spec: PipelineSpec, versions: list[int]) -> dict[int, list[str] | None]:
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
    inputs = model_inputs(cur, spec, sorted(live))
    out: dict[str, list[str]] = {}
    for col in columns:
        users = [f"v{v} ({role})" for v, role in sorted(live.items())
                 if inputs.get(v) is None or col in (inputs.get(v) or [])]
        if users:
            out[col] = users
    return out
