"""No secret in any output. Recognisable secrets are seeded - a warehouse password (also one with the
characters that break a URI), a webhook token, signing keys - and every failure path that used to
print one is run: the local stack's migrate after a refused spec, migrate and the UI against an
unreachable or malformed connection, a failing alert channel, the errors tasks hand to Airflow.
None of the secrets may appear in captured output, logs, alert payloads or UI responses.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

import pytest
import yaml

from tests.integration.dagtest import ROOT

pytestmark = pytest.mark.integration

SEED = "Zq9-SEEDED-pw"
# malformed: libpq quotes the pieces of the password in its error
BAD_PW, BAD_PERCENT_PW = f"p@ss w0rd {SEED}", f"pa%zz{SEED}"
BAD_URI = f"postgresql://bob:{BAD_PW}@127.0.0.1:1/warehouse"  # unencoded '@' and spaces
BAD_PERCENT_URI = f"postgresql://bob:{BAD_PERCENT_PW}@127.0.0.1:1/warehouse"  # a '%' not encoded (fails at once)
TOKEN = "T0KEN-SEEDED-webhook"


@pytest.fixture
def captured():
    """Every log record of every logger, as text (independent of how Airflow set up logging)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("airtrain"), logging.getLogger("airtrain.alerts")]
    for lg in loggers:
        lg.addHandler(handler)
    yield lines
    for lg in loggers:
        lg.removeHandler(handler)


def refused_spec_dir(tmp_path):
    data = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    data["monitoring"]["trigger"]["drift_share"] = 1.5  # any refusal (issue 20 item 1 had a metric drop's cap)
    d = tmp_path / "pipelines"
    d.mkdir()
    (d / "churn.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return d


def test_the_local_stacks_migrate_refuses_a_spec_in_one_line_without_the_password(tmp_path, warehouse, monkeypatch,
                                                                                 capfd):
    """`make run` / `make migrate` after a refused spec: the URL travels in the environment (never on
    the command line, where `ps` and a CalledProcessError show it), the refusal is one line with the
    file, the key and the fix."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import devstack

    password = urlsplit(warehouse.uri).password
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(refused_spec_dir(tmp_path)))
    argvs: list[list[str]] = []
    real_run = subprocess.run

    def spy(args, *a, **kw):  # records the command line, runs it for real
        argvs.append([str(x) for x in args])
        return real_run(args, *a, **kw)

    monkeypatch.setattr(devstack.subprocess, "run", spy)
    code = devstack.migrate({"AIRFLOW_CONN_WAREHOUSE": warehouse.uri, "PATH": os.environ["PATH"]})
    out, err = capfd.readouterr()
    assert code == 1
    assert argvs and not any(password in a for argv in argvs for a in argv), argvs
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    refusal = errors[0]  # one line: the file, the key, what is wrong and what to do
    assert refusal.startswith("error: invalid pipeline spec ") and "churn.yaml" in refusal, err
    assert "monitoring.trigger.drift_share" in refusal and "fix the spec" in refusal
    assert "Traceback" not in err and password not in out + err


def test_migrate_against_a_malformed_url_names_the_error_not_the_password(tmp_path):
    specs = tmp_path / "pipelines"
    specs.mkdir()
    (specs / "churn.yaml").write_text((ROOT / "include/pipelines/churn.yaml").read_text())
    out = subprocess.run([sys.executable, "-m", "airtrain.migrate", "--spec-dir", str(specs)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WAREHOUSE_URL": BAD_URI, "PYTHONPATH": str(ROOT / "include")})
    assert out.returncode == 1 and "error: churn: OperationalError" in out.stderr, out.stderr
    assert SEED not in out.stdout + out.stderr and "w0rd" not in out.stderr and "Traceback" not in out.stderr


def test_the_reports_page_shows_connection_errors_redacted(tmp_path, monkeypatch):
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from airtrain_airflow.ui import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", BAD_PERCENT_URI)
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(ROOT / "include/pipelines"))
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    saved, api_app._AuthManagerState.instance = api_app._AuthManagerState.instance, None
    try:
        api_app.create_auth_manager()
        app = create_app()
        app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="vera", role="admin")
        client = TestClient(app, raise_server_exceptions=False)
        page = client.get("/")
        cards, card = client.get("/cards/churn"), client.get("/cards/churn/1.json")
    finally:
        api_app._AuthManagerState.instance = saved
    assert page.status_code == 200 and "cannot read them: ProgrammingError: invalid dsn" in page.text
    assert cards.status_code == card.status_code == 503 and "invalid dsn" in cards.text
    for body in (page.text, cards.text, card.text):
        assert SEED not in body and "pa%zz" not in body


@pytest.fixture
def redirecting_webhook():
    """A webhook that takes the POST and answers with a redirect to a URL holding a token: urllib
    refuses it with an error quoting that URL - a channel failure whose message carries a secret."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(302)
            self.send_header("Location", f"slackwebhook://:{TOKEN}@hooks.slack.com/services/T0/B0/{TOKEN}")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/airtrain", received
    server.shutdown()
    server.server_close()


def test_alert_payloads_and_channel_failures_are_redacted(tmp_path, warehouse, monkeypatch, redirecting_webhook,
                                                          captured, capfd):
    from airtrain_airflow.notify import send_alert
    from airtrain_dev.demo import write_demo_spec

    url, received = redirecting_webhook
    spec_dir = tmp_path / "pipelines"
    write_demo_spec(ROOT / "include/pipelines/churn.yaml", spec_dir, {"alerts": {"webhook_conn_id": "alert_hook"}})
    monkeypatch.setenv("AIRTRAIN_SPEC_DIR", str(spec_dir))
    monkeypatch.setenv("AIRFLOW_CONN_ALERT_HOOK", url)
    password = urlsplit(warehouse.uri).password
    details = {"error": f"cannot reach {warehouse.uri}", "dsn": f"host=db password={SEED}",
               "nested": [{"slack": f"slackwebhook://:{TOKEN}@hooks.slack.com/services/x"}],
               "url": f"https://hooks.slack.com/services/T0/B0/{TOKEN}"}
    sent = send_alert("churn", "task failed", f"error: could not connect to {warehouse.uri}", details)
    assert sent == ["log"]  # the webhook failed (the redirect) ...
    assert received, "the webhook got the POST"  # ... after it received the payload
    out, err = capfd.readouterr()
    text = json.dumps(received) + "\n".join(captured) + out + err
    assert any("webhook alert failed" in ln for ln in captured + out.splitlines() + err.splitlines())
    for secret in (password, SEED, TOKEN):
        assert secret not in text
    assert received[0]["details"]["nested"][0]["slack"] == "slackwebhook://:***@hooks.slack.com/services/***"


def test_errors_handed_to_airflow_are_redacted_and_keep_their_type(warehouse):
    """What a task raises is what Airflow writes to the task log and the failure alert: a permanent
    error becomes AirflowFailException (not retried), anything else stays itself (retried)."""
    import psycopg2
    from airflow.sdk.exceptions import AirflowFailException
    from airtrain.data.ingest import SourceFormatError
    from airtrain.warehouse.connection import Warehouse
    from airtrain_airflow.notify import _error_text
    from airtrain_airflow.runtime import fail_fast

    password = urlsplit(warehouse.uri).password
    with pytest.raises(AirflowFailException) as failed:
        with fail_fast():
            raise SourceFormatError(f"cannot read {warehouse.uri}?sslmode=require&password={SEED}")
    with pytest.raises(psycopg2.OperationalError) as retried:  # a connection error: still retried
        with fail_fast(), Warehouse(BAD_URI).connect():
            pass
    for exc in (failed.value, retried.value):
        logged = "".join(traceback.format_exception(exc)) + _error_text(exc)
        assert password not in logged and SEED not in logged and "w0rd" not in logged, logged
    assert str(failed.value).startswith("SourceFormatError: cannot read postgresql://")
