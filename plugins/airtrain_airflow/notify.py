"""Alerts: a notifier built from the spec's ``alerts`` section.

Every alert is logged (always, at WARNING, so it is in the task or DAG-processor log). When the
spec configures them, it also goes to Slack (``apache-airflow-providers-slack``'s webhook
notifier), e-mail (the SMTP provider's notifier) and a generic JSON webhook (an Airflow HTTP
connection: ``AIRFLOW_CONN_<ID>='http://host/path'``). A channel that fails or is not installed
is logged as an error; it never fails the task or hides the other channels.

Used as ``on_failure_callback`` of every pipeline DAG (a failed run) and by the monitor's
``notify`` task (a triggered retrain).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger("airtrain.alerts")


def _redact(text: str) -> str:
    from airtrain.db import redact_text

    return redact_text(text)


def send_alert(pipeline: str, event: str, message: str, details: dict[str, Any] | None = None) -> list[str]:
    """Log the alert and send it to every configured channel. Returns the channels that got it."""
    from airtrain_airflow.runtime import spec_for

    message = _redact(message)
    log.warning("ALERT [%s] %s: %s", pipeline, event, message)
    sent = ["log"]
    try:
        alerts = spec_for(pipeline).alerts
    except Exception as exc:  # noqa: BLE001 - an alert must not fail because the spec broke
        log.error("alerts for %s: cannot read the spec (%s); logged only", pipeline, exc)
        return sent
    subject = f"[airtrain] {pipeline}: {event}"
    if alerts.slack_conn_id:
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            SlackWebhookNotifier(slack_webhook_conn_id=alerts.slack_conn_id, text=f"*{subject}*\n{message}").notify({})
            sent.append("slack")
        except ImportError:
            log.error("alerts.slack_conn_id is set but apache-airflow-providers-slack is not installed")
        except Exception as exc:  # noqa: BLE001
            log.error("Slack alert failed: %s", exc)
    if alerts.smtp_to:
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(to=list(alerts.smtp_to), subject=subject, html_content=f"<pre>{message}</pre>").notify({})
            sent.append("smtp")
        except Exception as exc:  # noqa: BLE001
            log.error("e-mail alert failed: %s", exc)
    if alerts.webhook_conn_id:
        try:
            post_webhook(alerts.webhook_conn_id, {"pipeline": pipeline, "event": event, "message": message,
                                                  "details": details or {}})
            sent.append("webhook")
        except Exception as exc:  # noqa: BLE001
            log.error("webhook alert failed: %s", exc)
    return sent


def post_webhook(conn_id: str, payload: dict[str, Any], timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON to the URL of an Airflow connection (scheme http/https)."""
    import urllib.request

    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    scheme = (conn.conn_type or "http").replace("_", "-")
    scheme = "https" if scheme == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    path = conn.schema or ""
    url = f"{scheme}://{conn.host}{port}/{path.lstrip('/')}"
    req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL from an Airflow connection
        return resp.status


class PipelineFailureNotifier(BaseNotifier):
    """``on_failure_callback``: which task failed, in which run, and why."""

    def __init__(self, pipeline: str) -> None:
        super().__init__()
        self.pipeline = pipeline

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to template (and DAG-level callbacks may get a DAG without a Jinja env)."""

    def notify(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "?")
        task = getattr(ti, "task_id", None)
        err = context.get("exception") or context.get("reason") or ""
        where = f"task {task} of " if task else ""
        send_alert(self.pipeline, "run failed", f"{where}{dag_id} run {run_id} failed: {err}".strip(),
                   {"dag_id": dag_id, "run_id": run_id, "task_id": task})
