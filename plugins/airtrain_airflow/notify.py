"""Alerts: a notifier built from the spec's ``alerts`` section.

Every alert is logged (always, at WARNING, so it is in the task or DAG-processor log). When the
spec configures them, it also goes to Slack (``apache-airflow-providers-slack``'s webhook
notifier), e-mail (the SMTP provider's notifier) and a generic JSON webhook (an Airflow HTTP
connection: ``AIRFLOW_CONN_<ID>='http://host/path'``). A channel that fails or is not installed
is logged as an error; it never fails the task or hides the other channels.

Used as ``on_failure_callback`` of every task (a failed task: which, why, the run, a link to its
log) and of every pipeline DAG (a run that failed for another reason), and by the monitor's
``notify`` task (a triggered retrain, :func:`retrain_decision`), fairness breaches and aborted canaries.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import BaseNotifier

from airtrain_airflow import links

log = logging.getLogger("airtrain.alerts")


def _redact(text: str) -> str:
    from airtrain.warehouse import redact_text

    return redact_text(text)


def _redact_value(value: Any) -> Any:
    """``value`` (a payload: dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return _redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def send_alert(pipeline: str, event: str, message: str, details: dict[str, Any] | None = None) -> list[str]:
    """Log the alert and send it to every configured channel. Returns the channels that got it."""
    from airtrain.spec import load_spec, spec_dir

    message = _redact(message)
    details = _redact_value(json.loads(json.dumps(details or {}, default=str)))
    log.warning("ALERT [%s] %s: %s", pipeline, event, message)
    sent = ["log"]
    try:
        alerts = load_spec(spec_dir() / f"{pipeline}.yaml").alerts
    except Exception as exc:  # noqa: BLE001 - an alert must not fail because the spec broke
        log.error("alerts for %s: cannot read the spec (%s); logged only", pipeline, _redact(str(exc)))
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
            log.error("Slack alert failed: %s", _redact(f"{type(exc).__name__}: {exc}"))
    if alerts.smtp_to:
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(to=list(alerts.smtp_to), subject=subject, html_content=f"<pre>{message}</pre>").notify({})
            sent.append("smtp")
        except Exception as exc:  # noqa: BLE001
            log.error("e-mail alert failed: %s", _redact(f"{type(exc).__name__}: {exc}"))
    if alerts.webhook_conn_id:
        try:
            post_webhook(alerts.webhook_conn_id, {"pipeline": pipeline, "event": event, "message": message,
                                                  "details": details})
            sent.append("webhook")
        except Exception as exc:  # noqa: BLE001
            log.error("webhook alert failed: %s", _redact(f"{type(exc).__name__}: {exc}"))
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


def _error_text(err: Any) -> str:
    """``Type: message`` of the error, unwrapping the AirflowFailException a permanent error became."""
    if err is None or err == "":
        return "(no error message: see the log)"
    if isinstance(err, BaseException):
        cause = err.__cause__ if type(err).__name__ == "AirflowFailException" and err.__cause__ else err
        text = str(cause)
        if not text.startswith(f"{type(cause).__name__}:"):
            text = f"{type(cause).__name__}: {text}"
    else:
        text = str(err)
    try:  # Airflow's secrets masker (connection passwords, masked variables) on top of ours
        from airflow.sdk.log import redact

        text = str(redact(text))
    except ImportError:  # pragma: no cover - older task SDKs
        pass
    text = _redact(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " […] (cut; the log has it all)"


MAX_ERROR_CHARS = 1500

#: exceptions Airflow fails a task with at once, whatever retries are left
NEVER_RETRIED = ("AirflowFailException", "AirflowSensorTimeout")


def _never_retried(err: Any) -> bool:
    """Was the task failed without its retries: a permanent error (``fail_fast``'s AirflowFailException),
    a sensor past its deadline?"""
    from airtrain.errors import PermanentError

    return isinstance(err, BaseException) and (type(err).__name__ in NEVER_RETRIED or isinstance(err, PermanentError)
                                               or isinstance(err.__cause__, PermanentError))


def ui_base_url() -> str:
    from airflow.sdk import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def task_log_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = None,
                 try_number: int | None = None) -> str:
    """The task instance's log page in the Airflow 3 UI (``/dags/<dag>/runs/<run>/tasks/<task>``, the
    same address Airflow's own ``TaskInstance.log_url`` gives; its first tab is the log)."""
    from urllib.parse import quote

    url = f"{ui_base_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


class PipelineFailureNotifier(BaseNotifier):
    """Failure alerts: which task failed, why (the error, redacted), in which run, and a link to its log.

    ``scope="task"`` is every task's ``on_failure_callback`` (default args): it runs once a task has
    failed for good (no retry left, or a permanent error), with the exception. ``scope="run"`` is the
    DAG's ``on_failure_callback``: it only speaks when a run failed for another reason than a failed
    task (a deadlock, a timeout) - a failed task has sent its own, more precise alert already.
    """

    def __init__(self, pipeline: str, scope: str = "run") -> None:
        super().__init__()
        if scope not in ("task", "run"):
            raise ValueError("scope must be 'task' or 'run'")
        self.pipeline = pipeline
        self.scope = scope

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to template (and DAG-level callbacks may get a DAG without a Jinja env)."""

    def notify(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", None) or \
            getattr(context.get("dag"), "dag_id", "?")
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or getattr(ti, "run_id", "?")
        if self.scope == "run":
            reason = str(context.get("reason") or "")
            if reason == "task_failure":
                log.info("run %s of %s failed because a task failed: that task sent the alert", run_id, dag_id)
                return
            url = f"{ui_base_url()}/dags/{dag_id}/runs/{run_id}"
            send_alert(self.pipeline, "run failed",
                       f"run {run_id} of {dag_id} failed: {_redact(reason) or 'no reason given'}\nrun: {url}",
                       {"dag_id": dag_id, "run_id": run_id, "reason": reason, "url": url})
            return
        task_id = getattr(ti, "task_id", None) or "?"
        map_index = getattr(ti, "map_index", None)
        try_number = getattr(ti, "try_number", None)
        tries = getattr(ti, "max_tries", None)
        url = task_log_url(dag_id, run_id, task_id, map_index, try_number)
        error = _error_text(context.get("exception"))
        which = f"{task_id}[{map_index}]" if map_index is not None and map_index >= 0 else task_id
        if _never_retried(context.get("exception")):  # failed at once: "try 1 of 3" would promise two more
            attempt = f" (try {try_number}, not retried: this error cannot fix itself)" if try_number else \
                " (not retried: this error cannot fix itself)"
        else:
            attempt = f" (try {try_number} of {tries + 1})" if try_number and tries is not None else ""
        msg = f"task {which} of {dag_id} failed{attempt}\nerror: {error}\nrun: {run_id}\nlog: {url}"
        send_alert(self.pipeline, "task failed", msg, {
            "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index,
            "try_number": try_number, "error": error, "log_url": url})


def retrain_decision(name: str, decision: dict[str, Any], *, failed: str | None = None) -> list[str]:
    """Alert on a triggered retrain (or, with ``failed``, on a retrain that could not be
    triggered); nothing to say otherwise."""
    if not decision or not decision.get("trigger"):
        return []
    window = f"window {decision['window_start']}..{decision['window_end']}"
    report = f"Report: {links.report_url(name, 'drift', decision.get('report_id'))}"
    details = {k: decision.get(k) for k in (
        "window_end", "decision", "drift_share", "report_id", "retrain_run_id", "model_version")}
    if failed:
        msg = (f"retrain trigger FAILED for {window}: {failed}. Drift: {decision['reason']}. The window is not "
               f"in cooldown: the next window that drifts triggers again (or trigger the retrain by hand). {report}")
        return send_alert(name, "retrain trigger failed", msg, {**details, "error": failed})
    msg = f"retrain triggered for {window} (run {decision['retrain_run_id']}): {decision['reason']}. {report}"
    return send_alert(name, "retrain triggered", msg, details)


def fairness_breach(name: str, monitoring_schema: str, window_end: Any, b: dict[str, Any]) -> list[str]:
    """Alert on one ``fairness.monitor`` breach of a window (a row of ``fairness_alerts_due``)."""
    msg = (f"fairness disparity past its threshold on realized labels (window ending {window_end}, champion "
           f"v{b['model_version']}): {b['reason']}. Per group: {monitoring_schema}."
           f"fairness_metrics (window_end {window_end}, attribute {b['attribute']}).")
    details = {"window_end": str(window_end), "attribute": b["attribute"], "metric": b["metric"],
               "value": b["value"], "threshold": b["threshold"], "model_version": b["model_version"],
               "labeled_start": str(b["labeled_start"]), "labeled_end": str(b["labeled_end"]),
               "n_rows": b["n_rows"]}
    return send_alert(name, "fairness disparity", msg, details)


def canary_aborted(name: str, monitoring_schema: str, r: dict[str, Any]) -> list[str]:
    """Alert on an aborted canary (a row of ``aborted_canaries_due``)."""
    msg = (f"canary of v{r['candidate_version']} aborted ({r['reason']}); the champion v{r['champion_version']} "
           f"keeps every entity. Decided by {r['decided_by']} on {r['decided_on']}; per-day metrics: "
           f"{monitoring_schema}.canary_evaluations (rollout_id = {r['id']}).")
    return send_alert(name, "canary aborted", msg, {k: str(v) for k, v in r.items()})
