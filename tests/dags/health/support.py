"""The installation of the monitor, alert, dashboard and API tests (the `health_installation` fixture).

Real parts: a real SMTP server (aiosmtpd) and a Slack-compatible incoming webhook on free loopback
ports, which the Airflow connections `fitlake_smtp` and `fitlake_slack` point at; 8 simulated days
landed and built by a cycle through the scheduler; the monitor DAG, on, run by the gold Asset that
the cycle's transform publishes.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RECIPIENT = "ops@example.com"
# 12 members over 8 days: enough for the volume check's 7 trailing days, small enough to land and
# build in seconds. Such a small population varies a lot from day to day, so the volume threshold is
# widened (FITLAKE_VOLUME_MAX_CHANGE, documented); the injected drop removes a whole day.
SIMULATION = {"members": 12, "gyms": 2, "days": 8, "seed": 5}
MONITOR_ENV = {
    "FITLAKE_MONITOR_SCHEDULE": "none",  # only after transforms and when triggered: no hourly run mid-test
    "FITLAKE_MONITOR_RETRY_DELAY_SECONDS": "2",
    "FITLAKE_VOLUME_MAX_CHANGE": "0.8",
}


class SmtpInbox:
    """aiosmtpd on a free loopback port; `messages` are the parsed e-mails it received, in order."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        from launchers.airflow_env import free_port

        self.messages: list = []
        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                inbox.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def connection_env(self, conn_id: str = "fitlake_smtp") -> dict[str, str]:
        connection = {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"to": [RECIPIENT], "disable_ssl": True, "disable_tls": True, "timeout": 10},
        }
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)}

    @staticmethod
    def text(message) -> str:
        """Subject and every text part (plain and HTML) of a message."""
        parts = [message["Subject"] or ""]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        return "\n".join(parts)

    def matching(self, *needles: str) -> list:
        return [m for m in list(self.messages) if all(n in self.text(m) for n in needles)]

    def wait_for(self, *needles: str, timeout: float = 60) -> list:
        """The messages whose subject or body contain every needle, once there is at least one."""
        deadline = time.monotonic() + timeout
        while not (found := self.matching(*needles)) and time.monotonic() < deadline:
            time.sleep(0.25)
        return found

    def stop(self) -> None:
        self.controller.stop()


class WebhookInbox:
    """A Slack-compatible incoming webhook on loopback: records every JSON body POSTed to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                length = int(self.headers.get("Content-Length", 0))
                inbox.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def connection_env(self, conn_id: str = "fitlake_slack") -> dict[str, str]:
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "slackwebhook", "password": self.url})}

    def matching(self, *needles: str) -> list[dict]:
        return [b for b in list(self.bodies) if all(n in b.get("text", "") for n in needles)]

    def wait_for(self, *needles: str, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not (found := self.matching(*needles)) and time.monotonic() < deadline:
            time.sleep(0.25)
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AlertInboxes:
    """Both inboxes, and the environment that points an installation's alert connections at them."""

    def __init__(self):
        self.smtp = SmtpInbox()
        self.webhook = WebhookInbox()

    def env(self) -> dict[str, str]:
        return {**self.smtp.connection_env(), **self.webhook.connection_env(), **MONITOR_ENV}

    def stop(self) -> None:
        self.smtp.stop()
        self.webhook.stop()


def prepare(inst, inboxes: AlertInboxes):
    """Turn the monitor on, simulate 8 days, land and build them with a cycle; the transform's gold Asset
    runs the monitor: `inst.first_monitor_run` is that run, finished."""
    from ingestion.simulate import default_start, simulate

    inst.smtp, inst.webhook = inboxes.smtp, inboxes.webhook
    inst.api.wait_for_dags("monitor")
    inst.api.unpause("monitor")
    days = SIMULATION["days"]
    simulate(inst.settings, **SIMULATION, start=default_start(days, datetime.now(UTC)))
    inst.first_cycle = inst.cycle()
    inst.first_monitor_run = wait_for_asset_triggered_monitor(inst, known=set())
    return inst


def wait_for_asset_triggered_monitor(inst, known: set[str], timeout: float = 300) -> dict:
    """The monitor run the gold Asset created (not one of `known`), once it has finished."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [
            r for r in inst.api.runs("monitor") if r["run_type"] == "asset_triggered" and r["dag_run_id"] not in known
        ]
        if runs:
            return finished(inst, runs[-1]["dag_run_id"])
        assert time.monotonic() < deadline, f"no monitor run after the transform within {timeout:.0f}s"
        time.sleep(0.5)


def finished(inst, run_id: str, timeout: float = 300) -> dict:
    run = inst.api.wait_for_run("monitor", run_id, timeout=timeout)
    run["task_states"] = inst.api.task_states("monitor", run_id)
    return run


def run_monitor(inst, conf: dict | None = None) -> dict:
    """Trigger the monitor (as the hourly schedule would) once nothing runs; the run with its task states."""
    inst.api.wait_until_idle("transform_dbt", settle=0.5)
    inst.api.wait_until_idle("monitor", settle=0.5)
    return finished(inst, inst.api.trigger("monitor", conf))


def history_dir(inst) -> Path:
    return inst.data_root / "health" / "history"


def history(inst, run_id: str | None = None) -> list[dict]:
    """Rows of the health history (all, or one run's), read as the dashboard and the API read it."""
    import duckdb
    from fitlake_common.health import history_sql

    sql = f"select * from {history_sql(history_dir(inst))}" + (" where run_id = ?" if run_id else "")
    with duckdb.connect() as con:
        cursor = con.execute(sql, [run_id] if run_id else [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
