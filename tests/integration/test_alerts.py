"""Alerts: a triggered retrain and a failed run reach the log always and the spec's webhook when
configured (a real HTTP server on loopback), with secrets redacted."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.integration.dagtest import ROOT, Project

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/airtrain", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(tmp_path, warehouse, monkeypatch, airflow_db, webhook):
    from airtrain_dev.demo import write_demo_spec

    url, _ = webhook
    p = Project(tmp_path, warehouse)
    write_demo_spec(ROOT / "include/pipelines/churn.yaml", p.spec_dir, {
        "alerts": {"webhook_conn_id": "alert_hook"}, "schedule": {"retry_delay_minutes": 0.01}})
    monkeypatch.setenv("AIRFLOW_CONN_ALERT_HOOK", url)
    p.activate(monkeypatch)
    return p


def test_send_alert_logs_and_posts_with_secrets_redacted(project, webhook, caplog):
    from airtrain_airflow.notify import send_alert

    _, received = webhook
    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    secret = "hunter2"
    sent = send_alert("churn", "retrain triggered", f"cannot reach postgresql://bob:{secret}@db/x", {"k": 1})
    assert sent == ["log", "webhook"]
    assert received and received[0]["pipeline"] == "churn" and received[0]["event"] == "retrain triggered"
    assert secret not in json.dumps(received) and secret not in caplog.text
    assert "ALERT [churn] retrain triggered" in caplog.text


def test_a_failed_task_alerts_once_with_the_error_the_run_and_a_log_link(project, webhook, caplog):
    from urllib.parse import quote

    _, received = webhook
    caplog.set_level(logging.WARNING, logger="airtrain.alerts")
    dr, states = project.run({"date": "2026-01-05"})  # its landing file never came and cannot any more
    assert str(dr.state) == "failed" and states["wait_for_landing"] == "failed", states
    alerts = [r for r in received if r["event"] in ("task failed", "run failed")]
    assert len(alerts) == 1, received  # the task's alert; the run's callback does not repeat it
    a = alerts[0]
    msg, details = a["message"], a["details"]
    # a file that can no longer arrive fails at once: the alert says so instead of "try 1 of 3"
    assert a["event"] == "task failed" and msg.startswith(
        "task wait_for_landing of churn_retrain failed (try 1, not retried: this error cannot fix itself)")
    assert "data/landing/churn/2026-01-05.csv" in msg and "can no longer arrive" in msg  # the error itself
    assert f"run: {dr.run_id}" in msg
    log_url = f"/dags/churn_retrain/runs/{quote(dr.run_id, safe='')}/tasks/wait_for_landing?try_number=1"
    assert details["log_url"].endswith(log_url) and f"log: {details['log_url']}" in msg
    assert details["task_id"] == "wait_for_landing" and details["run_id"] == dr.run_id
    assert "ALERT [churn] task failed" in caplog.text


def test_the_failure_alert_redacts_secrets_in_the_error(project, webhook):
    from airflow.sdk.exceptions import AirflowFailException
    from airtrain.data.ingest import SourceFormatError
    from airtrain_airflow.notify import PipelineFailureNotifier

    _, received = webhook
    secret = "hunter2"

    class FailedTask:  # the fields Airflow's task instance hands the callback
        dag_id, run_id, task_id, map_index, try_number, max_tries = "churn_retrain", "manual__1", "score", 1, 3, 2

    cause = SourceFormatError(f"cannot read postgresql://bob:{secret}@db/x")
    try:
        raise AirflowFailException(str(cause)) from cause
    except AirflowFailException as exc:
        PipelineFailureNotifier("churn", scope="task").notify({"ti": FailedTask(), "exception": exc})
    msg = received[-1]["message"]
    assert secret not in json.dumps(received) and "postgresql://bob:***@db/x" in msg
    assert msg.startswith("task score[1] of churn_retrain failed (try 3, not retried: this error cannot fix itself)"
                          "\nerror: SourceFormatError: cannot")
    assert "/dags/churn_retrain/runs/manual__1/tasks/score/mapped/1?try_number=3" in msg


def test_a_triggered_retrain_alerts_with_its_run_and_report_and_a_quiet_window_does_not(project, webhook):
    from airtrain_airflow.notify import retrain_decision as notify_decision

    _, received = webhook
    quiet = {"trigger": False, "decision": "no_drift"}
    assert notify_decision("churn", quiet) == [] and received == []
    decision = {"trigger": True, "decision": "retrain", "window_start": "2026-01-05", "window_end": "2026-01-05",
                "retrain_run_id": "drift__2026-01-05", "reason": "critical feature(s) drifted: monthly_charges",
                "report_id": "churn-20260105-v1", "drift_share": 0.4, "model_version": 1}
    assert notify_decision("churn", decision) == ["log", "webhook"]
    assert received[-1]["details"]["retrain_run_id"] == "drift__2026-01-05"
    assert "/airtrain/reports/churn/drift/churn-20260105-v1" in received[-1]["message"]
