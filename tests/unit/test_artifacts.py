"""Model artifacts: skops, checksum verified, untrusted types and version mismatches refused."""

from __future__ import annotations

import numpy as np
import pytest
from airtrain import artifacts
from airtrain.artifacts import (
    ArtifactIntegrityError,
    LibraryVersionMismatchError,
    UntrustedArtifactError,
    dump_model,
    load_model,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer


def _model():
    X = np.random.default_rng(0).normal(size=(100, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X


def test_round_trip_gives_identical_predictions():
    model, X = _model()
    art = dump_model(model)
    assert art.format == "skops" and len(art.sha256) == 64 and art.versions["sklearn"]
    loaded = load_model(art.data, art.sha256, art.versions)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_tampered_artifact_is_refused():
    model, _ = _model()
    art = dump_model(model)
    data = bytearray(art.data)
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ArtifactIntegrityError, match="checksum mismatch"):
        load_model(bytes(data), art.sha256)


class Evil:  # defined in the test module: not a trusted type
    def __call__(self, X):
        return X


def test_untrusted_types_are_refused():
    art = dump_model(Pipeline([("f", FunctionTransformer(Evil()))]))
    with pytest.raises(UntrustedArtifactError, match="Evil"):
        load_model(art.data, art.sha256)


def test_library_version_mismatch_is_reported(monkeypatch):
    model, _ = _model()
    art = dump_model(model)
    recorded = {**art.versions, "sklearn": "0.99.0"}
    with pytest.raises(LibraryVersionMismatchError, match="scikit-learn 0.99.0"):
        load_model(art.data, art.sha256, recorded)
    patch = art.versions["sklearn"].rsplit(".", 1)[0] + ".999"
    assert artifacts.check_versions({**art.versions, "sklearn": patch}) == [
        f"sklearn: trained with {patch}, running {art.versions['sklearn']}"]
