#!/usr/bin/env bash
# Create .venv with a Python 3.11-3.13 and install the exact pins of requirements.txt (runtime) and
# requirements-dev.txt (tests, lint, the embedded PostgreSQL), then the project itself (editable).
# Idempotent: does nothing when the venv already matches requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.installed"
want="$(cat requirements.txt requirements-dev.txt requirements.in pyproject.toml | sha256sum | cut -c1-16)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi

pick_python() {
  for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [[ -z "$cand" ]] && continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
  py="$(pick_python)" || { echo "error: Python 3.11, 3.12 or 3.13 is required (set PYTHON=/path/to/python3.x)" >&2; exit 1; }
  echo "==> creating $VENV with $("$py" --version)"
  "$py" -m venv "$VENV"
fi

echo "==> installing pinned requirements into $VENV (first time: a few minutes)"
if "$VENV/bin/python" -m uv --version >/dev/null 2>&1; then
  UV=("$VENV/bin/python" -m uv)
elif command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip --upgrade >/dev/null
  if "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"; then
    UV=("$VENV/bin/python" -m uv)
  else
    UV=()
  fi
fi
if [[ ${#UV[@]} -gt 0 ]]; then
  "${UV[@]}" pip install --quiet --python "$VENV/bin/python" -r requirements.txt -r requirements-dev.txt
  "${UV[@]}" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
else  # plain pip (slower)
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt -r requirements-dev.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
fi
# setuptools leaves build metadata (*.egg-info) in the source tree; on sys.path (the project root is,
# under `python -m pytest`) it would register the Airflow plugin a second time: the editable
# install's own metadata lives in the venv, so remove these leftovers.
rm -rf ./*.egg-info include/*.egg-info plugins/*.egg-info
echo "$want" > "$STAMP"
echo "==> environment ready"
