"""Each version's performance estimator, stored with it at evaluation time
(``registry.performance_estimators``): the isotonic calibrator of a binary classifier (JSON) or the
direct-loss-estimation models of a regressor (a skops artifact, signed and checked like the model's),
fitted on the version's holdout by :func:`airtrain.model.calibration.fit_for_version`. The monitor
loads it to estimate the version's performance before labels arrive
(:mod:`airtrain.monitoring.estimates`); the model card shows the calibration curve.

Keyed by version: a re-evaluation replaces it (one transaction). A holdout too small to fit on is
recorded with its reason (``error``), so the monitor can say why a version has no estimate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from airtrain.model.artifacts import (
    ArtifactError,
    ArtifactSignatureError,
    resolve_keys,
    sha256,
    sign,
    verify_signature,
)
from airtrain.model.calibration import Calibrator, EstimationError, FittedEstimator, LossEstimator
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident

log = logging.getLogger(__name__)

TABLE = "performance_estimators"

DDL = (
    "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, version integer NOT NULL, "
    "kind text NOT NULL CHECK (kind IN ('calibrator','loss_estimator')), holdout_start date, holdout_end date, "
    "n_rows integer NOT NULL, calibrator jsonb, artifact bytea, artifact_sha256 text, artifact_signature text, "
    "library_versions jsonb, error text, run_id text, created_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (pipeline, version))")
COMMENT = ("Each model version's performance estimator, fitted on its holdout at evaluation: the isotonic "
           "calibrator of a classifier's scores (JSON: thresholds, rows per step, the reliability curve) or a "
           "regressor's loss models (skops artifact, signed like the model's); error: why none could be fitted. The "
           "monitor estimates the version's performance from it before labels arrive.")


def _signed_name(spec: PipelineSpec) -> str:
    # the signature covers what the artifact is: a loss estimator can never pass for the model's artifact
    return f"{spec.name}#loss_estimator"


def store(wh: Warehouse, spec: PipelineSpec, version: int, fitted: FittedEstimator, *,
          holdout: tuple[dt.date, dt.date], run_id: str) -> None:
    """Store (replace) the estimator of ``version``."""
    cal = art = sig = None
    if fitted.calibrator is not None:
        cal = fitted.calibrator.to_json()
    if fitted.loss_estimator is not None:
        art = fitted.loss_estimator.to_skops()
        sig = sign(resolve_keys(wh.artifact_keys), _signed_name(spec), version, art.sha256)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {} (pipeline, version, kind, holdout_start, holdout_end, n_rows, calibrator, artifact, "
            "artifact_sha256, artifact_signature, library_versions, error, run_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (pipeline, version) DO UPDATE SET "
            "kind = EXCLUDED.kind, holdout_start = EXCLUDED.holdout_start, holdout_end = EXCLUDED.holdout_end, "
            "n_rows = EXCLUDED.n_rows, calibrator = EXCLUDED.calibrator, artifact = EXCLUDED.artifact, "
            "artifact_sha256 = EXCLUDED.artifact_sha256, artifact_signature = EXCLUDED.artifact_signature, "
            "library_versions = EXCLUDED.library_versions, error = EXCLUDED.error, run_id = EXCLUDED.run_id, "
            "created_at = now()").format(ident(spec.warehouse.registry_schema, TABLE)),
            (spec.name, version, fitted.kind, holdout[0], holdout[1], fitted.n_rows, cal,
             None if art is None else art.data, None if art is None else art.sha256, sig,
             None if art is None else json.dumps(art.versions), fitted.error, run_id))


@dataclass
class Loaded:
    """A version's stored estimator (``estimator`` None: none, ``reason`` says why)."""

    version: int
    estimator: Calibrator | LossEstimator | None
    reason: str = ""


def load(wh: Warehouse, spec: PipelineSpec, version: int) -> Loaded:
    """The estimator of ``version``, checked (calibrator: parsed and validated; loss estimator: signature,
    checksum, library versions, trusted types). A version evaluated before estimators existed, or whose
    holdout could not be fitted, has none (the reason says which)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT kind, calibrator, artifact, artifact_sha256, artifact_signature, library_versions, "
                            "error FROM {} WHERE pipeline = %s AND version = %s").format(
            ident(spec.warehouse.registry_schema, TABLE)), (spec.name, version))
        row = cur.fetchone()
    if row is None:
        return Loaded(version, None, f"v{version} has no performance estimator (evaluated before estimators were "
                                     "stored: re-evaluate or retrain it)")
    kind, cal, data, sha, sig, libs, error = row
    if error:
        return Loaded(version, None, f"v{version} has no performance estimator: {error}")
    try:
        if kind == "calibrator":
            return Loaded(version, Calibrator.from_json(cal))
        verify_signature(resolve_keys(wh.artifact_keys), _signed_name(spec), version, sha, sig)
        return Loaded(version, LossEstimator.from_skops(bytes(data), sha, libs))
    except (ArtifactError, EstimationError) as exc:
        # fails closed: a stored estimator that does not verify is never used; the monitor goes on without an
        # estimate and says why (the drift check and the realized performance do not depend on it)
        log.warning("%s v%s: performance estimator refused: %s", spec.name, version, exc)
        return Loaded(version, None, f"v{version}'s performance estimator was refused: {exc}")


def resign(cur: Any, spec: PipelineSpec, keys: Any, versions: list[int] | None) -> list[int]:
    """Sign (again) the loss estimators of ``versions`` (default: all) with the newest key, after checking
    each against its checksum (``airtrain resign-artifacts``, in its transaction)."""
    table = ident(spec.warehouse.registry_schema, TABLE)
    cur.execute(sql.SQL("SELECT version, artifact, artifact_sha256 FROM {} WHERE pipeline = %s AND artifact IS NOT "
                        "NULL AND (%s::int[] IS NULL OR version = ANY(%s::int[])) ORDER BY version").format(table),
                (spec.name, versions, versions))
    done = []
    for version, data, sha in cur.fetchall():
        if sha256(bytes(data)) != sha:
            raise ArtifactSignatureError(f"{spec.name} v{version}: the loss estimator does not match its checksum; "
                                         "not signing it")
        cur.execute(sql.SQL("UPDATE {} SET artifact_signature = %s WHERE pipeline = %s AND version = %s").format(table),
                    (sign(keys, _signed_name(spec), version, sha), spec.name, version))
        done.append(int(version))
    return done


def calibration_curve(cur: Any, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """The version's reliability curve and Brier scores for its model card (None: no calibrator)."""
    cur.execute(sql.SQL("SELECT calibrator, error, n_rows, holdout_start, holdout_end FROM {} WHERE pipeline = %s "
                        "AND version = %s").format(ident(spec.warehouse.registry_schema, TABLE)),
                (spec.name, version))
    row = cur.fetchone()
    if row is None:
        return None
    cal, error, n_rows, start, end = row
    if error or not cal:
        return {"error": error, "rows": n_rows} if error else None
    return {"curve": cal.get("curve", []), "brier_raw": cal.get("brier_raw"),
            "brier_calibrated": cal.get("brier_calibrated"), "rows": n_rows,
            "holdout": [str(start), str(end)]}
