"""Model artifacts are signed (HMAC-SHA256, key outside the warehouse) and verified on every load.

The checksum sits in the same row as the artifact: someone who can write that row could swap in
another model with its matching checksum. The signature is made with a key the warehouse never
holds, over (pipeline, version, sha256), so a swapped artifact, a signature copied from another
version, or a removed signature is refused. Keys carry an id: rotation signs with the newest and
verifies with every configured one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from airtrain.model.artifacts import ArtifactSignatureError, dump_model, parse_keys
from airtrain.registry import versions
from airtrain.spec import load_spec
from airtrain.steps.schema import apply_schema
from sklearn.linear_model import LogisticRegression

from tests.integration.dagtest import fetch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "include/pipelines/churn.yaml")
K1 = "k1:" + "a" * 40
K2 = "k2:" + "b" * 40


def _register(wh, seed: int) -> int:
    X = np.random.default_rng(seed).normal(size=(60, 3))
    art = dump_model(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)))
    return versions.register_version(wh, SPEC, artifact=art.data, artifact_sha256=art.sha256,
                                     artifact_format=art.format, run_id=f"run-{seed}", estimator="lr",
                                     params={"seed": seed}, lineage={"data_hash": str(seed),
                                                                     "library_versions": art.versions})


@pytest.fixture
def wh(warehouse, monkeypatch):
    monkeypatch.delenv("AIRTRAIN_ARTIFACT_SECRET_KEYS", raising=False)
    apply_schema(warehouse, SPEC)
    return dataclasses.replace(warehouse, artifact_keys=parse_keys(K1))


def test_signed_on_register_and_verified_on_load(wh):
    v = _register(wh, 1)
    (sig,) = fetch(wh, "SELECT artifact_signature FROM registry.model_versions WHERE version = %s", (v,))[0]
    assert sig.startswith("hmac-sha256:k1:")
    assert versions.load_artifact(wh, SPEC, v).predict_proba(np.zeros((1, 3))).shape == (1, 2)


def test_a_swapped_artifact_with_its_own_checksum_is_refused(wh):
    """Tampering by someone who can write the row: the old code checked only the row's own checksum."""
    v1, v2 = _register(wh, 1), _register(wh, 2)
    with wh.connect() as conn, conn.cursor() as cur:  # v2's model and checksum into v1's row
        cur.execute("UPDATE registry.model_versions t SET artifact = s.artifact, artifact_sha256 = s.artifact_sha256 "
                    "FROM registry.model_versions s WHERE t.version = %s AND s.version = %s", (v1, v2))
    with pytest.raises(ArtifactSignatureError, match="does not match"):
        versions.load_artifact(wh, SPEC, v1)
    with wh.connect() as conn, conn.cursor() as cur:  # and v2's signature too: it is bound to version 2
        cur.execute("UPDATE registry.model_versions t SET artifact_signature = s.artifact_signature "
                    "FROM registry.model_versions s WHERE t.version = %s AND s.version = %s", (v1, v2))
    with pytest.raises(ArtifactSignatureError, match="does not match"):
        versions.load_artifact(wh, SPEC, v1)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE registry.model_versions SET artifact_signature = NULL WHERE version = %s", (v1,))
    with pytest.raises(ArtifactSignatureError, match="not signed"):
        versions.load_artifact(wh, SPEC, v1)
    versions.load_artifact(wh, SPEC, v2)  # the untouched version still loads


def test_key_rotation_signs_with_the_newest_and_verifies_with_all(wh):
    old = _register(wh, 1)  # signed with k1
    rotated = dataclasses.replace(wh, artifact_keys=parse_keys(f"{K2},{K1}"))  # k2 first: it signs now
    new = _register(rotated, 2)
    assert fetch(wh, "SELECT version, split_part(artifact_signature, ':', 2) FROM registry.model_versions "
                     "ORDER BY version") == [(old, "k1"), (new, "k2")]
    versions.load_artifact(rotated, SPEC, old)
    versions.load_artifact(rotated, SPEC, new)
    only_new = dataclasses.replace(wh, artifact_keys=parse_keys(K2))  # k1 retired too early ...
    with pytest.raises(ArtifactSignatureError, match="signed with key 'k1', which is not configured"):
        versions.load_artifact(only_new, SPEC, old)
    assert versions.resign_artifacts(rotated, SPEC) == [old, new]  # ... re-sign first, then retire it
    versions.load_artifact(only_new, SPEC, old)


def test_without_a_key_artifacts_are_unsigned_and_signed_ones_are_refused(wh, warehouse):
    unsigned = _register(warehouse, 1)  # no key anywhere: stored unsigned (logged), checksum-checked
    assert fetch(warehouse, "SELECT artifact_signature FROM registry.model_versions WHERE version = %s",
                 (unsigned,)) == [(None,)]
    versions.load_artifact(warehouse, SPEC, unsigned)
    with pytest.raises(ArtifactSignatureError, match="not signed but signing keys are configured"):
        versions.load_artifact(wh, SPEC, unsigned)  # once keys exist, unsigned rows need re-signing
    signed = _register(wh, 2)
    with pytest.raises(ArtifactSignatureError, match="which is not configured"):
        versions.load_artifact(warehouse, SPEC, signed)


def test_keys_from_the_environment(warehouse, monkeypatch):
    apply_schema(warehouse, SPEC)
    monkeypatch.setenv("AIRTRAIN_ARTIFACT_SECRET_KEYS", K2)
    v = _register(warehouse, 3)
    assert fetch(warehouse, "SELECT split_part(artifact_signature, ':', 2) FROM registry.model_versions") == [("k2",)]
    versions.load_artifact(warehouse, SPEC, v)


@pytest.mark.parametrize("text, message", [
    ("k1:short", "at least 32"),
    ("no-secret", "expected '<id>:<secret>'"),
    (f"{K1},{K1}", "configured twice"),
])
def test_bad_key_configuration_is_a_clear_error(text, message):
    with pytest.raises(ArtifactSignatureError, match=message):
        parse_keys(text)


def test_the_airflow_layer_passes_the_variable_key_to_the_core(warehouse, monkeypatch):
    """Tasks get their warehouse from the hook, which reads the Airflow Variable (here through the
    environment-variables secrets backend) and hands the key to the core; it wins over the core's env."""
    from airtrain_airflow.hooks import WarehouseHook

    apply_schema(warehouse, SPEC)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", warehouse.uri)
    monkeypatch.setenv("AIRFLOW_VAR_AIRTRAIN_ARTIFACT_SECRET_KEYS", "kvar:" + "v" * 40)
    monkeypatch.setenv("AIRTRAIN_ARTIFACT_SECRET_KEYS", K1)
    wh = WarehouseHook(postgres_conn_id="warehouse").get_warehouse()
    assert "kvar" not in repr(wh) and "v" * 40 not in repr(wh)
    v = _register(wh, 4)
    assert fetch(warehouse, "SELECT split_part(artifact_signature, ':', 2) FROM registry.model_versions "
                            "WHERE version = %s", (v,)) == [("kvar",)]
    versions.load_artifact(wh, SPEC, v)
