"""Alerts through Airflow's notifiers, configured by Airflow connections and off without them.

* E-mail: the smtp provider's `SmtpNotifier`, when the connection FITLAKE_ALERT_SMTP_CONN_ID
  (default `fitlake_smtp`, type smtp: host, port, login, password) exists. Recipients: the
  connection's extra `to` (a list or a comma-separated string), else FITLAKE_ALERT_EMAIL_TO; the sender:
  the extra `from_email`, else FITLAKE_ALERT_EMAIL_FROM (default `fitlake@localhost`).
* Slack (or any Slack-compatible incoming webhook): the Slack provider's `SlackWebhookNotifier`,
  when the connection FITLAKE_ALERT_SLACK_CONN_ID (default `fitlake_slack`, type slackwebhook, the
  webhook URL as password) exists.

No connection, no alert, no error: the demo has none. Connections are looked up when an alert is
sent, never when a DAG is parsed.

Every FitLake DAG alerts on a failed run with one line: `DAG(..., on_failure_callback=alerts.on_dag_run_failure)`.
The monitor DAG calls :func:`send_health_alert` for failed checks.
"""

from __future__ import annotations

import html
import logging
import os

log = logging.getLogger(__name__)

SMTP_CONN_ID = os.environ.get("FITLAKE_ALERT_SMTP_CONN_ID", "fitlake_smtp")
SLACK_CONN_ID = os.environ.get("FITLAKE_ALERT_SLACK_CONN_ID", "fitlake_slack")
EMAIL_TO = os.environ.get("FITLAKE_ALERT_EMAIL_TO", "")
EMAIL_FROM = os.environ.get("FITLAKE_ALERT_EMAIL_FROM", "fitlake@localhost")


def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _recipients(connection) -> list[str]:
    extra = connection.extra_dejson or {}
    raw = extra.get("to") or EMAIL_TO
    names = raw if isinstance(raw, list) else str(raw).split(",")
    return [n.strip() for n in names if n and n.strip()]


def notifiers(subject: str, html_body: str, text: str) -> list:
    """The notifiers whose connection exists, ready to send this message."""
    found = []
    smtp = _connection(SMTP_CONN_ID)
    if smtp is not None:
        to = _recipients(smtp)
        if to:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            sender = (smtp.extra_dejson or {}).get("from_email") or EMAIL_FROM
            found.append(
                SmtpNotifier(
                    to=to, from_email=sender, subject=subject, html_content=html_body, smtp_conn_id=SMTP_CONN_ID
                )
            )
        else:
            log.warning(
                "connection %s exists but names no recipient: set its extra {'to': [...]} or FITLAKE_ALERT_EMAIL_TO",
                SMTP_CONN_ID,
            )
    if _connection(SLACK_CONN_ID) is not None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        found.append(SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text=f"*{subject}*\n{text}"))
    return found


def send(subject: str, html_body: str, text: str, context=None) -> list[str]:
    """Send through every configured notifier; returns their names. A notifier that fails is logged,
    and the others still send (one broken channel must not silence the rest)."""
    sent = []
    found = notifiers(subject, html_body, text)
    if not found:
        log.info(
            "no alert channel configured (connections %s, %s): not sending %r", SMTP_CONN_ID, SLACK_CONN_ID, subject
        )
        return sent
    errors = []
    for notifier in found:
        name = type(notifier).__name__
        try:
            # notify(), not __call__: the message is final text, it must not be rendered as a template
            notifier.notify(context or {})
            sent.append(name)
            log.info("alert sent through %s: %s", name, subject)
        except Exception as exc:  # noqa: BLE001 - report every failed channel, then fail once
            log.exception("alert through %s failed", name)
            errors.append(f"{name}: {exc}")
    if errors and not sent:
        raise RuntimeError(f"no alert could be sent ({'; '.join(errors)}); check the alert connections")
    return sent


def base_url() -> str:
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def run_url(dag_id: str, run_id: str) -> str:
    from urllib.parse import quote

    return f"{base_url()}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def _table(rows: list[dict]) -> str:
    head = "".join(
        f"<th align='left'>{html.escape(k)}</th>" for k in ("check", "entity", "status", "value", "threshold", "detail")
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape('' if v is None else (f'{v:g}' if isinstance(v, float) else str(v)))}</td>"
            for v in (r["check_name"], r["entity"], r["status"], r["value"], r["threshold"], r["detail"])
        )
        + "</tr>"
        for r in rows
    )
    return f"<table border='1' cellpadding='4' cellspacing='0'><tr>{head}</tr>{body}</table>"


def health_message(
    failing: list[dict], run_link: str, dashboard_link: str, still_failing: list[dict] = ()
) -> tuple[str, str, str]:
    """Subject, HTML and plain text of a health alert: the checks to alert on, then those still failing
    that were alerted before (listed, not repeated)."""
    names = ", ".join(f"{r['check_name']} {r['entity']}" for r in failing[:4])
    more = f" and {len(failing) - 4} more" if len(failing) > 4 else ""
    worst = "error" if any(r["status"] == "error" for r in failing) else "warn"
    subject = f"[FitLake] health {worst}: {len(failing)} check(s) failing ({names}{more})"

    def why(r: dict) -> str:
        return f" ({r['reason']})" if r.get("reason") else ""

    still = ", ".join(f"{r['check_name']} {r['entity']}" for r in still_failing)
    text = "\n".join(
        f"- {r['status'].upper()} {r['check_name']} / {r['entity']}{why(r)}: {r['detail']}" for r in failing
    )
    if still:
        text += f"\nStill failing, alerted before: {still}"
    text += f"\nMonitor run: {run_link}\nDashboard: {dashboard_link}"
    body = f"<p>{len(failing)} FitLake health check(s) failed.</p>{_table(failing)}"
    if still:
        body += f"<p>Still failing, alerted before: {html.escape(still)}</p>"
    body += (
        f"<p>Monitor run: <a href='{html.escape(run_link)}'>{html.escape(run_link)}</a><br>"
        f"Dashboard: <a href='{html.escape(dashboard_link)}'>{html.escape(dashboard_link)}</a></p>"
        "<p>Thresholds and what to do: README, section Health checks.</p>"
    )
    return subject, body, text


def send_health_alert(failing: list[dict], dag_id: str, run_id: str, context=None, still_failing=()) -> list[str]:
    link = run_url(dag_id, run_id)
    subject, body, text = health_message(failing, link, f"{base_url()}/fitlake-dashboard/", list(still_failing))
    return send(subject, body, text, context)


def _failed_tasks(dag_id: str, run_id: str, context) -> list[str]:
    """The failed tasks of the run, asked of the API server (a DAG callback runs in the DAG processor,
    whose `dag_run` is a plain record without task instances); else the task the callback names."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(t for t, state in states.items() if state == "failed")
        if failed:
            return failed
    except Exception:  # noqa: BLE001 - the list is a courtesy; the alert must go out without it
        log.warning("could not list the failed tasks of %s %s", dag_id, run_id, exc_info=True)
    ti = context.get("ti") or context.get("task_instance")
    return [ti.task_id] if getattr(ti, "task_id", None) else []


def on_dag_run_failure(context) -> None:
    """DAG-level `on_failure_callback`: one alert per failed run, naming the failed tasks and linking the run."""
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "?")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "?")
    failed = _failed_tasks(dag_id, run_id, context)
    link = run_url(dag_id, run_id)
    reason = context.get("reason") or "a task failed"
    subject = f"[FitLake] DAG run failed: {dag_id}"
    tasks = ", ".join(failed) if failed else "see the run"
    text = f"DAG {dag_id}, run {run_id} failed ({reason}). Failed tasks: {tasks}.\nRun: {link}"
    body = (
        f"<p>The DAG <b>{html.escape(dag_id)}</b> failed: run {html.escape(run_id)} ({html.escape(str(reason))}).</p>"
        f"<p>Failed tasks: {html.escape(tasks)}</p><p>Run: <a href='{html.escape(link)}'>{html.escape(link)}</a></p>"
    )
    send(subject, body, text, context)
