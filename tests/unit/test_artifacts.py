"""Model artifacts: skops, checksum verified, untrusted types and version mismatches refused."""

from __future__ import annotations

import numpy as np
import pytest
from airtrain.model import artifacts
from airtrain.model.artifacts import (
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


def test_a_second_load_in_one_process_is_a_private_copy_checked_again(monkeypatch):
    """The per-process cache of deserialised artifacts skips only skops' work: the checksum, the
    library versions and the trusted types are checked on every load, and each caller gets its own
    object (changing one loaded model never changes the next load)."""
    model, X = _model()
    art = dump_model(model)
    first = load_model(art.data, art.sha256, art.versions)
    assert art.sha256 in artifacts._LOADED
    first.coef_[:] = 0.0  # a caller that changes its model
    second = load_model(art.data, art.sha256, art.versions)
    assert second is not first
    np.testing.assert_array_equal(second.predict_proba(X), model.predict_proba(X))
    data = bytearray(art.data)
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ArtifactIntegrityError, match="checksum mismatch"):  # a cached checksum is no excuse
        load_model(bytes(data), art.sha256)
    # a narrower allow-list applies to a model already in the cache (HGB holds a non-default type)
    from sklearn.ensemble import HistGradientBoostingClassifier

    hgb = dump_model(HistGradientBoostingClassifier(max_iter=3).fit(X, (X[:, 0] > 0).astype(int)))
    load_model(hgb.data, hgb.sha256, hgb.versions)
    assert artifacts._LOADED[hgb.sha256][0], "the HGB artifact holds a type outside skops' defaults"
    monkeypatch.setattr(artifacts, "TRUSTED_TYPES", frozenset())
    with pytest.raises(UntrustedArtifactError, match="TreePredictor"):
        load_model(hgb.data, hgb.sha256, hgb.versions)


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


def _raw(model) -> tuple[bytes, str]:
    """skops bytes written without dump_model's check (what a tampered registry row could hold)."""
    data = artifacts.skops_io().dumps(model)
    return data, artifacts.sha256(data)


def test_untrusted_types_are_refused():
    data, sha = _raw(Pipeline([("f", FunctionTransformer(Evil()))]))
    with pytest.raises(UntrustedArtifactError, match="Evil"):
        load_model(data, sha)
    with pytest.raises(UntrustedArtifactError, match="Evil"):  # refused when written, already
        dump_model(Pipeline([("f", FunctionTransformer(Evil()))]))


@pytest.mark.parametrize("func", [eval, exec, print], ids=["eval", "exec", "print"])
def test_builtin_functions_are_refused(func):
    """The old allow-list trusted every ``builtins.*`` name: a pipeline calling ``eval`` on its input loaded."""
    data, sha = _raw(Pipeline([("f", FunctionTransformer(func)), ("m", LogisticRegression())]))
    assert f"builtins.{func.__name__}" in artifacts.skops_io().get_untrusted_types(data=data)
    with pytest.raises(UntrustedArtifactError, match=f"builtins.{func.__name__}"):
        load_model(data, sha)


@pytest.mark.parametrize("estimator, params", [
    ("sklearn.linear_model.LogisticRegression", {}),
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 3}),
    ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 5}),
    ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 3}),
])
def test_the_pipelines_specs_build_need_only_trusted_types(estimator, params):
    """The exact trusted list covers the real fitted pipelines (preprocessing + estimator) of the
    estimators the specs use; a library upgrade that adds a type fails here, not at scoring time."""
    import datetime as dt
    from pathlib import Path

    import yaml
    from airtrain.data.features import coerce_features
    from airtrain.model.training import build_pipeline
    from airtrain.simulate import simulate_day
    from airtrain.spec import parse_spec

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "include/pipelines/churn.yaml").read_text())
    data["training"] = {**data["training"], "estimator": estimator, "params": params}
    spec = parse_spec(data)
    df, _ = simulate_day(dt.date(2026, 3, 1), rows=200)
    X = coerce_features(df, spec)[spec.feature_names]
    pipe = build_pipeline(spec).fit(X, np.arange(len(X)) % 2)
    extra = set(artifacts.skops_io().get_untrusted_types(data=artifacts.skops_io().dumps(pipe)))
    assert extra <= artifacts.TRUSTED_TYPES, extra - artifacts.TRUSTED_TYPES
    art = dump_model(pipe)
    np.testing.assert_array_equal(load_model(art.data, art.sha256).predict_proba(X), pipe.predict_proba(X))


def test_library_version_mismatch_is_reported(monkeypatch):
    model, _ = _model()
    art = dump_model(model)
    recorded = {**art.versions, "sklearn": "0.99.0"}
    with pytest.raises(LibraryVersionMismatchError, match="scikit-learn 0.99.0"):
        load_model(art.data, art.sha256, recorded)
    patch = art.versions["sklearn"].rsplit(".", 1)[0] + ".999"
    assert artifacts.check_versions({**art.versions, "sklearn": patch}) == [
        f"sklearn: trained with {patch}, running {art.versions['sklearn']}"]
