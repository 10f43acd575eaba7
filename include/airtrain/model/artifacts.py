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

import copy
import hashlib
import hmac
import logging
import os
import platform
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from airtrain.errors import PermanentError
from airtrain.warehouse.redaction import remember_secret

log = logging.getLogger(__name__)

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


class ArtifactSignatureError(ArtifactError):
    """The artifact's signature is missing, made with an unknown key, or does not match."""


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
            "airtrain.model.artifacts.TRUSTED_TYPES are loaded: if this is a scikit-learn type your estimator "
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


#: artifacts this process has already deserialised, by the checksum of their verified bytes: a warm
#: process (``dag.test()``, a benchmark, a long-lived scorer) loads a version once, not once per task
#: (skops' audit + load is ~0.4 s for the demo model). Bounded; every caller gets its own deep copy.
_LOADED: OrderedDict[str, tuple[list[str], Any]] = OrderedDict()
_LOADED_MAX = 8


def load_model(data: bytes, expected_sha256: str, recorded_versions: dict[str, str] | None = None) -> Any:
    """Verify the checksum, the library versions and the types, then load."""
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"model artifact checksum mismatch: the registry recorded {expected_sha256} but the artifact is "
            f"{actual}; it was corrupted or tampered with and will not be loaded")
    check_versions(recorded_versions)
    hit = _LOADED.get(actual)
    if hit is not None:  # the same verified bytes: the same types and the same object graph
        _LOADED.move_to_end(actual)
        _check_types(hit[0], "model artifact")
        return copy.deepcopy(hit[1])
    sio = skops_io()
    try:
        types = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - skops raises several kinds for malformed input
        raise ArtifactIntegrityError(f"model artifact is not a readable skops file: {exc}") from None
    _check_types(types, "model artifact")
    model = sio.loads(data, trusted=types)
    _LOADED[actual] = (list(types), copy.deepcopy(model))
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)
    return model


# ---------------------------------------------------------------------------------------------
# signatures
# ---------------------------------------------------------------------------------------------

#: where the core finds the signing keys when the caller passed none (the Airflow layer passes the
#: Airflow Variable ``airtrain_artifact_secret_keys``, which a secrets backend can serve)
KEYS_ENV = "AIRTRAIN_ARTIFACT_SECRET_KEYS"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
ArtifactKeys = tuple[tuple[str, bytes], ...]


def parse_keys(text: str | None) -> ArtifactKeys:
    """``"<id>:<secret>,<id>:<secret>,..."`` -> ((id, secret bytes), ...). The FIRST key signs; every
    key verifies (rotation: put the new key first, keep the old ones until no artifact needs them).
    A secret has at least 32 characters; ids are short names (``2026q1``); nothing is logged."""
    keys: list[tuple[str, bytes]] = []
    items = [i.strip() for i in (text or "").replace("\n", ",").split(",") if i.strip()]
    for n, item in enumerate(items, 1):
        kid, sep, secret = item.partition(":")
        if not sep or not _KEY_ID.match(kid):  # nothing of it is echoed: without its '<id>:' it may all be secret
            raise ArtifactSignatureError(f"artifact key {n} of {len(items)} ({KEYS_ENV} / the Variable "
                                         "airtrain_artifact_secret_keys): expected '<id>:<secret>' with an id of "
                                         "letters, digits, '_', '.', '-' (at most 32)")
        if len(secret) < 32:
            raise ArtifactSignatureError(f"artifact key {kid!r}: the secret has {len(secret)} characters, at least "
                                         "32 are needed (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if any(k == kid for k, _ in keys):
            raise ArtifactSignatureError(f"artifact key id {kid!r} is configured twice")
        remember_secret(secret)  # masked wherever it might be printed (airtrain.warehouse.redact_text)
        keys.append((kid, secret.encode()))
    return tuple(keys)


def resolve_keys(keys: ArtifactKeys | None) -> ArtifactKeys:
    """The caller's keys, else the ones in ``$AIRTRAIN_ARTIFACT_SECRET_KEYS`` (possibly none)."""
    return keys if keys else parse_keys(os.environ.get(KEYS_ENV))


def _message(pipeline: str, version: int, sha: str) -> bytes:
    return f"airtrain-artifact-v1\n{pipeline}\n{int(version)}\n{sha}".encode()


def sign(keys: ArtifactKeys, pipeline: str, version: int, sha: str) -> str | None:
    """``hmac-sha256:<key id>:<hex>`` over (pipeline, version, artifact sha256), with the first key;
    None when no key is configured (unsigned mode, logged)."""
    if not keys:
        log.warning("%s v%s: no artifact signing key configured (%s / Airflow Variable airtrain_artifact_secret_keys): "
                    "the artifact is stored unsigned", pipeline, version, KEYS_ENV)
        return None
    kid, key = keys[0]
    return f"hmac-sha256:{kid}:{hmac.new(key, _message(pipeline, version, sha), hashlib.sha256).hexdigest()}"


def verify_signature(keys: ArtifactKeys, pipeline: str, version: int, sha: str, signature: str | None) -> str:
    """Check ``signature`` before anything is loaded; returns the key id (or ``"unsigned"``).

    With keys configured, an unsigned artifact, one signed with a key id that is not configured, or
    a signature that does not match (the row's artifact, checksum, pipeline or version was changed)
    is refused. Without keys, only unsigned artifacts load (a signed one cannot be checked)."""
    what = f"{pipeline} v{version}"
    if not signature:
        if keys:
            raise ArtifactSignatureError(
                f"the artifact of {what} is not signed but signing keys are configured: refusing to load it (its "
                "signature was removed, or it was stored before signing was enabled: retrain, or re-sign the "
                "versions you trust with `airtrain resign-artifacts --url ...`)")
        log.warning("%s: loading an unsigned artifact (no signing key configured: only its checksum is checked)",
                    what)
        return "unsigned"
    scheme, _, rest = signature.partition(":")
    kid, _, digest = rest.partition(":")
    if scheme != "hmac-sha256" or not kid or not digest:
        raise ArtifactSignatureError(f"the artifact signature of {what} is malformed: refusing to load it")
    known = dict(keys)
    if kid not in known:
        raise ArtifactSignatureError(
            f"the artifact of {what} is signed with key {kid!r}, which is not configured "
            f"(configured: {sorted(known) or 'none'}): refusing to load it. Keep retired keys in "
            f"{KEYS_ENV} / airtrain_artifact_secret_keys until no artifact needs them")
    want = hmac.new(known[kid], _message(pipeline, version, sha), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, digest):
        raise ArtifactSignatureError(
            f"the artifact signature of {what} does not match (key {kid!r}): the artifact, its checksum or its "
            "registry row was changed by someone without the key; refusing to load it")
    return kid
