"""Safe model files: skops (no pickle), a sha256 checked before every load, library versions.

``pickle``/``joblib`` run arbitrary code on load. skops only instantiates types it is told to trust:
its own defaults (scikit-learn estimators, NumPy arrays, plain containers) plus the exact types in
:data:`TRUSTED_TYPES` - the ones the pipelines our specs build really contain (a test dumps them and
checks) - and refuses anything else, so a tampered artifact cannot execute code (``builtins.eval``,
``os.system`` ... are refused). An estimator that needs another type fails at training time, when
its artifact is written, with the type named: review it, then add it here. The checksum is verified first, so a corrupted
or swapped artifact is refused before it is even parsed.
"""

from __future__ import annotations

import hashlib
import platform
import warnings
from dataclasses import dataclass, field
from typing import Any

from airtrain.errors import PermanentError

#: exact types trusted beyond skops' defaults (found by ``skops.io.get_untrusted_types`` on the
#: fitted pipelines of the estimators the specs and tests use; tests/unit/test_artifacts.py checks it)
TRUSTED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


class ArtifactError(PermanentError, RuntimeError):
    """A model artifact was refused."""


class ArtifactIntegrityError(ArtifactError):
    """The artifact's sha256 differs from the registry's."""


class UntrustedArtifactError(ArtifactError):
    """The artifact contains types outside the allow-list."""


class LibraryVersionMismatchError(ArtifactError):
    """The artifact was written by a scikit-learn whose major.minor differs from the installed one."""


def skops_io() -> Any:
    """``skops.io``, imported with warnings silenced.

    On import skops looks up every SciPy ufunc by scanning ``getattr(module, name)`` over all of
    ``sys.modules``; in an Airflow process that touches Airflow's deprecated-attribute shims, each of
    which warns: ~1,160 DeprecatedImportWarning lines per task log, for nothing. The scan's result
    is right either way (the ufuncs are found in scipy.special)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skops.io as sio
    return sio


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import scipy
    import sklearn

    skops_io()
    import skops

    return {"python": platform.python_version(), "sklearn": sklearn.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pandas": pandas.__version__, "skops": skops.__version__}


@dataclass(frozen=True)
class ModelArtifact:
    data: bytes
    sha256: str
    format: str = "skops"
    versions: dict[str, str] = field(default_factory=dict)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_model(model: Any) -> ModelArtifact:
    """The model as skops bytes; refused here already if it holds a type a load would refuse."""
    sio = skops_io()
    data = sio.dumps(model, compression=8)
    _check_types(sio.get_untrusted_types(data=data), "the trained model")
    return ModelArtifact(data, sha256(data), "skops", library_versions())


def _check_types(types: list[str], what: str) -> None:
    untrusted = sorted(t for t in types if t not in TRUSTED_TYPES)
    if untrusted:
        raise UntrustedArtifactError(
            f"{what} contains types that are not trusted: {untrusted}; refusing it (only skops' defaults and "
            "airtrain.artifacts.TRUSTED_TYPES are loaded: if this is a scikit-learn type your estimator "
            "needs, review it and add its exact name there)")


def _minor(v: str) -> tuple[str, ...]:
    return tuple(v.split(".")[:2])


def check_versions(recorded: dict[str, str] | None) -> list[str]:
    """Raise on a scikit-learn major.minor mismatch; return notes for smaller differences."""
    if not recorded:
        return []
    installed = library_versions()
    notes = []
    for lib in ("sklearn", "numpy", "skops"):
        want, have = recorded.get(lib), installed.get(lib)
        if not want or want == have:
            continue
        if lib == "sklearn" and _minor(want) != _minor(have):
            raise LibraryVersionMismatchError(
                f"the model was trained with scikit-learn {want} but {have} is installed; models are not "
                f"portable across scikit-learn minor versions. Install scikit-learn=={want} or retrain the model")
        notes.append(f"{lib}: trained with {want}, running {have}")
    return notes


def load_model(data: bytes, expected_sha256: str, recorded_versions: dict[str, str] | None = None) -> Any:
    """Verify the checksum, the library versions and the types, then load."""
    sio = skops_io()

    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"model artifact checksum mismatch: the registry recorded {expected_sha256} but the artifact is "
            f"{actual}; it was corrupted or tampered with and will not be loaded")
    check_versions(recorded_versions)
    try:
        types = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - skops raises several kinds for malformed input
        raise ArtifactIntegrityError(f"model artifact is not a readable skops file: {exc}") from None
    _check_types(types, "model artifact")
    return sio.loads(data, trusted=types)
