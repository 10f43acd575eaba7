"""Imports flow one way: the import-linter contracts of pyproject.toml hold (layers of the core and of
the Airflow package, the core never importing Airflow, the runtime reaching the stages only through
``airtrain.steps``, no cycle in any package), a deliberate violation breaks them, and the core has no
function-level import of its own modules (a local import only defers a heavy library, listed once in
:data:`airtrain.thirdparty.DEFERRED`)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from airtrain.thirdparty import DEFERRED

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_import_contracts_hold():
    out = _lint_imports(ROOT, [ROOT / "include", ROOT / "plugins"])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "5 kept" in out.stdout, out.stdout[-2000:]


@pytest.mark.parametrize("path, line, contract, import_named", [
    pytest.param("include/airtrain/registry/versions.py", "from airtrain.steps import retrain  # noqa: F401",
                 "airtrain: the lifecycle stages in layers, imports flow down",
                 "airtrain.registry.versions -> airtrain.steps.retrain", id="the-registry-imports-a-step"),
    pytest.param("include/airtrain/data/labels.py", "from airtrain.model import training  # noqa: F401",
                 "airtrain: the lifecycle stages in layers, imports flow down",
                 "airtrain.data.labels -> airtrain.model.training", id="data-imports-model"),
    pytest.param("plugins/airtrain_airflow/notify.py", "from airtrain_airflow import runtime  # noqa: F401",
                 "airtrain_airflow: DAG wiring and operators above the runtime adapter, alerts below it",
                 "airtrain_airflow.notify -> airtrain_airflow.runtime", id="notify-imports-the-runtime"),
    pytest.param("plugins/airtrain_airflow/runtime.py", "from airtrain.registry import champions  # noqa: F401",
                 "airtrain_airflow: the runtime and the operators reach the stages only through airtrain.steps",
                 "airtrain_airflow.runtime -> airtrain.registry.champions", id="the-runtime-skips-the-steps"),
])
def test_a_deliberate_violation_breaks_its_contract(tmp_path, path, line, contract, import_named):
    """A copy of both packages with one import that goes the wrong way: lint-imports exits non-zero and
    names the contract and the import (the same run on the unchanged copy passes)."""
    for part in ("include", "plugins"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "pipelines"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    paths = [tmp_path / "include", tmp_path / "plugins"]
    assert _lint_imports(tmp_path, paths).returncode == 0
    target = tmp_path / path
    target.write_text(target.read_text() + f"\n{line}\n")
    out = _lint_imports(tmp_path, paths)
    assert out.returncode != 0, out.stdout[-3000:]
    text = " ".join(out.stdout.split())  # lint-imports wraps long lines
    assert f"{contract} BROKEN" in text, out.stdout[-3000:]
    assert import_named in text, out.stdout[-3000:]


def _function_level_imports(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, imported module) of every import statement inside a function body."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [(str(path.relative_to(ROOT)), node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((str(path.relative_to(ROOT)), node.lineno, "." * node.level + (node.module or "")))
    return found


def test_the_core_has_no_function_level_import_but_of_a_deferred_heavy_library():
    """Inside include/airtrain a local import is kept only to defer a heavy library (thirdparty.DEFERRED):
    an import of a core module inside a function hides a dependency from the layers, and a light library
    has no reason to wait."""
    local = _function_level_imports(ROOT / "include" / "airtrain")
    core = [f"{f}:{n}: {m}" for f, n, m in local if m.startswith(".") or m.split(".")[0] == "airtrain"]
    assert core == [], "function-level imports of core modules:\n" + "\n".join(core)
    light = [f"{f}:{n}: {m}" for f, n, m in local if m.split(".")[0] not in DEFERRED]
    assert light == [], ("function-level imports of libraries not listed in airtrain.thirdparty.DEFERRED (import "
                         "them at the top, or list a heavy one there):\n" + "\n".join(light))


def test_the_scan_sees_a_function_level_core_import(tmp_path, monkeypatch):
    """The scan above can fail: a core import inside a function is found."""
    pkg = tmp_path / "airtrain"
    pkg.mkdir()
    (pkg / "mod.py").write_text("def f():\n    from airtrain.registry import champions\n    import pandas\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _function_level_imports(pkg) == [("airtrain/mod.py", 2, "airtrain.registry"), ("airtrain/mod.py", 3, "pandas")]
