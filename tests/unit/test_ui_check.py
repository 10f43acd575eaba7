"""`make ui-check` says what is missing and exits, never hangs (issue 20, item 16): without Chromium it
stops before logging in or waiting for anything; a Chromium that never opens its DevTools endpoint,
or dies, fails the check within its timeout instead of blocking on its output."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ui_check():
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("ui_check")


def test_without_chromium_it_says_so_and_exits_at_once(tmp_path):
    with socket.socket() as s:  # a port where no stack answers: the check must not get as far as the stack
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / ".env").write_text(f"AIRFLOW_PORT={port}\nLOCAL_PG_PORT={port}\n")
    env = {k: v for k, v in os.environ.items() if k != "CHROMIUM"}
    env.update(PATH=str(Path(sys.executable).parent), AIRTRAIN_ENV_FILE=str(tmp_path / ".env"),
               AIRTRAIN_LOCAL_DIR=str(tmp_path / "local"), PYTHONWARNINGS="ignore")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "scripts/ui_check.py")], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "ui-check FAILED: no Chromium found" in out.stderr and "apt-get install chromium" in out.stderr
    assert time.monotonic() - t0 < 60
    out = subprocess.run([sys.executable, str(ROOT / "scripts/ui_check.py")], env={**env, "CHROMIUM": "/no/chromium"},
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "CHROMIUM='/no/chromium' is not an executable" in out.stderr, out.stderr


@pytest.mark.parametrize("script, message", [
    pytest.param("sleep 30", "did not start in 0 s", id="silent"),
    pytest.param("echo 'cannot open display' >&2; exit 3", "exited with 3 before it listened", id="dies"),
])
def test_a_chromium_that_never_listens_fails_the_check_instead_of_blocking(ui_check, tmp_path, capsys, script,
                                                                           message):
    fake = tmp_path / "chromium"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    proc = subprocess.Popen([str(fake)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    t0 = time.monotonic()
    try:
        with pytest.raises(SystemExit) as exit_:
            ui_check.devtools_url(proc, timeout=0.4)
    finally:
        proc.kill()
        proc.wait()
    assert exit_.value.code == 1 and time.monotonic() - t0 < 10
    assert message in capsys.readouterr().err
