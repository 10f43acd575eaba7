"""What keeps a daily run cheap and its logs readable: the executor preloads the heavy libraries
once (airtrain.preload, configured by `make run`), and the adapters import skops and Great
Expectations without their import-time noise."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# a module like Airflow's deprecation shims: every attribute lookup warns (a FutureWarning, as
# Airflow's DeprecatedImportWarning is)
NOISY = """
import sys, types, warnings
noisy = types.ModuleType("noisy_shim")
def _getattr(name):
    warnings.warn(f"noisy_shim.{name} is deprecated", FutureWarning)
    raise AttributeError(name)
noisy.__getattr__ = _getattr
sys.modules["noisy_shim"] = noisy
warnings.simplefilter("error")
"""


@pytest.mark.parametrize("code, ok", [
    pytest.param("from airtrain.model.artifacts import skops_io; skops_io()", True, id="through-the-adapter"),
    pytest.param("import skops.io", False, id="plain-import-warns"),
])
def test_skops_is_imported_without_its_warning_per_scipy_ufunc(code, ok):
    """skops scans every module for every SciPy ufunc on import; next to Airflow's deprecation shims
    that was ~1,160 warnings in each task log."""
    proc = subprocess.run([sys.executable, "-c", NOISY + code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "include"), "PATH": ""}, timeout=120)
    assert (proc.returncode == 0) is ok, proc.stderr[-2000:]
    if not ok:
        assert "noisy_shim." in proc.stderr


def test_great_expectations_is_imported_quietly():
    from airtrain.data.gx import _gx

    logging.getLogger("great_expectations").setLevel(logging.INFO)
    _gx()
    assert logging.getLogger("great_expectations").getEffectiveLevel() == logging.WARNING


def test_preload_imports_every_library_and_survives_a_missing_one():
    from airtrain.thirdparty import MODULES, import_all

    assert import_all(("json", "no_such_module_airtrain")) == ["no_such_module_airtrain"]
    missing = [m for m in MODULES if importlib.util.find_spec(m.split(".")[0]) is None]
    assert missing == []
    assert not any(m.startswith(("airtrain", "airflow")) for m in MODULES)  # never the project's own code


def test_make_run_configures_the_preloading_fork_server():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import devstack
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    env = devstack.airflow_env({"AIRFLOW_FERNET_KEY": "k", "AIRFLOW_SECRET_KEY": "s", "AIRFLOW_JWT_SECRET": "j",
                                "LOCAL_PG_PASSWORD": "p", "AIRTRAIN_ARTIFACT_SECRET_KEYS": "k1:secret"})
    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert env["AIRFLOW__CORE__MP_FORKSERVER_PRELOAD"] == "airtrain_airflow.preload"
