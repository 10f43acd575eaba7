"""Loading specs: one YAML file per model, validated into a :class:`PipelineSpec`; every problem is
refused with a message that names the file, the key and the fix (:class:`SpecError`). A folder is
scanned so that one broken spec breaks only itself (:func:`scan_specs`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import (
    ValidationError,
)

from airtrain.errors import PermanentError
from airtrain.spec.names import yaml_bool_hint
from airtrain.spec.pipeline import PipelineSpec


class SpecError(PermanentError, ValueError):
    """A spec file could not be loaded. The message names the file, the key and the fix."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid pipeline spec {self.path}:\n{lines}")


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("postgres", "files") or str(item).startswith("function-after"):
            continue  # discriminator tags / validator wrappers add noise to the path
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    key = _loc(err.get("loc", ()))
    kind = err.get("type", "")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"key '{key}': unknown key; remove it or check its spelling against docs/SPEC.md"
    if kind == "missing":
        return f"key '{key}': required key is missing; add it (see docs/SPEC.md)"
    if kind == "literal_error":
        return f"key '{key}': {msg}"
    if kind == "string_type" and isinstance(err.get("input"), bool):
        return f"key '{key}': {yaml_bool_hint(err['input'])}"
    return f"key '{key}': {msg} (got {err.get('input')!r})" if kind.endswith("_type") or kind.endswith(
        "_parsing") else f"key '{key}': {msg}"


def parse_spec(data: Any, path: str | Path = "<memory>") -> PipelineSpec:
    """Validate an already-parsed mapping into a :class:`PipelineSpec`."""
    if not isinstance(data, dict):
        raise SpecError(path, ["the file must hold a mapping (key: value pairs) at the top level"])
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(path, [_describe(e) for e in exc.errors()]) from None


def load_spec(path: str | Path) -> PipelineSpec:
    """Load and validate one spec file. Raises :class:`SpecError` with a readable message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        # libyaml's loader when PyYAML has it (~10x faster; every task of a run loads its spec)
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise SpecError(path, [f"not valid YAML: {exc}"]) from None
    spec = parse_spec(data, path)
    if spec.name != path.stem:
        raise SpecError(path, [f"key 'name': {spec.name!r} must match the file name {path.stem!r}; "
                               f"rename the file to {spec.name}.yaml or change name"])
    return spec


DEFAULT_SPEC_DIR = Path(__file__).resolve().parents[2] / "pipelines"


def spec_dir() -> Path:
    """Where the pipeline specs are: ``$AIRTRAIN_SPEC_DIR`` (the Docker image sets it, since an
    installed package has no ``include/pipelines`` beside it), else the repository's folder."""
    return Path(os.environ.get("AIRTRAIN_SPEC_DIR") or DEFAULT_SPEC_DIR)


def excluded_pipelines() -> set[str]:
    """Specs in the folder that are not loaded: ``$AIRTRAIN_EXCLUDE_PIPELINES`` (comma-separated names;
    the local stack sets ``churn``, the demo, when ``DEMO_DAYS=0``)."""
    return {n.strip() for n in os.environ.get("AIRTRAIN_EXCLUDE_PIPELINES", "").split(",") if n.strip()}


class SpecScan(NamedTuple):
    """Every spec of a folder: the ones that load, and one :class:`SpecError` per file that does not."""

    specs: list[PipelineSpec]
    errors: list[SpecError]


def scan_specs(directory: str | Path | None = None) -> SpecScan:
    """Load every ``*.yaml`` spec in ``directory`` (default :func:`spec_dir`), sorted by name, and
    collect the errors instead of stopping at the first: one broken spec breaks only itself (the DAG
    files, the UI page and ``airtrain migrate`` go on with the others and name the broken ones). The
    :func:`excluded_pipelines` are not loaded."""
    directory = Path(directory) if directory is not None else spec_dir()
    skip = excluded_pipelines()
    specs: list[PipelineSpec] = []
    errors: list[SpecError] = []
    seen: dict[str, Path] = {}
    for p in sorted(directory.glob("*.yaml")):
        if p.stem in skip:
            continue
        try:
            spec = load_spec(p)
        except SpecError as exc:
            errors.append(exc)
            continue
        if spec.name in seen:
            errors.append(SpecError(p, [f"key 'name': {spec.name!r} is also the name of {seen[spec.name]}; "
                                        "every pipeline needs its own name"]))
            continue
        seen[spec.name] = p
        specs.append(spec)
    return SpecScan(specs, errors)


class SpecsError(SpecError):
    """Some specs of a folder do not load (each one's message names its file, key and fix)."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.path = errors[0].path
        self.problems = [p for e in errors for p in e.problems]


def load_specs(directory: str | Path | None = None) -> list[PipelineSpec]:
    """Every spec in ``directory`` (default :func:`spec_dir`), sorted by name; raises one
    :class:`SpecsError` naming every file that does not load (never only the first). Code that must
    go on with the valid specs (DAG files, UI, ``airtrain migrate``) uses :func:`scan_specs`."""
    scan = scan_specs(directory)
    if scan.errors:
        raise SpecsError(scan.errors)
    return scan.specs
