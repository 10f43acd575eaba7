"""A real Evidently drift report renders in headless Chromium under the page's sandboxing CSP.

The drift report is Evidently's page of inline JavaScript: the policy must let it draw its charts
(in an opaque-origin sandbox without network), and the script-free validation policy must not (so
the check can fail). Needs Chromium (Debian's ``chromium`` or ``$CHROMIUM``): without it the test fails and says so.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_evidently_report_renders_under_the_drift_csp_only(tmp_path):
    assert CHROMIUM, "make test-e2e needs Chromium for this check: install Debian's `chromium` or set $CHROMIUM"
    import numpy as np
    import pandas as pd
    from airtrain.monitoring.drift import PREDICTION, ColumnRule, evidently_drift
    from airtrain_airflow.ui import REPORT_CSP

    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.choice(list("xyz"), 300), PREDICTION: rng.random(300)})
    cur = pd.DataFrame({"a": rng.normal(1, 1, 300), "b": rng.choice(list("xyz"), 300), PREDICTION: rng.random(300)})
    rules = [ColumnRule("a", "numerical", "psi", 0.1), ColumnRule("b", "categorical", "jensenshannon", 0.1),
             ColumnRule(PREDICTION, "numerical", "psi", 0.1)]
    _, snapshot = evidently_drift(ref, cur, rules, 0.5)
    body = snapshot.get_html_str(as_iframe=False).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", REPORT_CSP[self.path.strip("/")])
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def charts(kind: str) -> int:
            out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                                  f"--user-data-dir={tmp_path / kind}", "--virtual-time-budget=8000", "--dump-dom",
                                  f"http://127.0.0.1:{server.server_address[1]}/{kind}"],
                                 capture_output=True, text=True, timeout=120)
            return out.stdout.count("<svg")

        drawn, blocked = charts("drift"), charts("validation")
    finally:
        server.shutdown()
    assert drawn > 20, drawn  # Evidently drew its plots (about 50 svg elements for 3 columns)
    assert blocked < drawn // 4, (blocked, drawn)  # with scripts forbidden it cannot
