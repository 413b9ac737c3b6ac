"""An isolated FitLake installation for the monitor, dashboard and API tests.

Real parts: the embedded broker and SQL stand-in, a simulated run landed by the real landers, a
real `dbt build` of the warehouse, `airflow standalone` (scheduler, api-server, dag-processor) on
free ports, a real SMTP server (aiosmtpd) and a Slack-compatible webhook receiver on loopback.
transform_dbt is not used (it is being rewritten): the warehouse is built by dbt directly, and the
monitor DAG is triggered over the REST API as the gold Asset would trigger it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class SmtpInbox:
    """aiosmtpd on a free loopback port; `messages` are the parsed e-mails it received."""

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

    def text(self, message) -> str:
        parts = [message["Subject"] or ""]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        return "\n".join(parts)

    def wait(self, count: int = 1, timeout: float = 60) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        return list(self.messages)

    def stop(self):
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

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Api:
    def __init__(self, base: str):
        self.base = base
        self.token: str | None = None

    def call(self, method, path, body=None, token=None, cookie=None, accept="application/json"):
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode()
        )
        request.add_header("Accept", accept)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if cookie:
            request.add_header("Cookie", f"_token={cookie}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method, path, body=None):
        status, data = self.call(method, path, body, token=self.token)
        assert status < 300, f"{method} {path}: {status} {data[:500]!r}"
        return json.loads(data)

    def login(self, username: str, password: str) -> str:
        status, data = self.call("POST", "/auth/token", {"username": username, "password": password})
        assert status == 201, (status, data)
        self.token = json.loads(data)["access_token"]
        return self.token


class HealthInstallation:
    """Data root, Airflow home, embedded stack, a landed simulation and a built warehouse."""

    def __init__(self, root: Path, manifest: Path, extra_env: dict | None = None):
        from launchers.airflow_env import airflow_env, free_port

        self.root = root
        self.data_root = root / "data"
        self.port = free_port()
        self.smtp = SmtpInbox()
        self.webhook = WebhookInbox()
        connections = {
            "AIRFLOW_CONN_FITLAKE_SMTP": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": self.smtp.port,
                    "extra": {"to": ["ops@example.com"], "disable_ssl": True, "disable_tls": True, "timeout": 10},
                }
            ),
            "AIRFLOW_CONN_FITLAKE_SLACK": json.dumps({"conn_type": "slackwebhook", "password": self.webhook.url}),
        }
        self.env = airflow_env(
            root / "airflow",
            data_root=self.data_root,
            port=self.port,
            isolated_ports=True,
            extra={
                "FITLAKE_DBT_MANIFEST": str(manifest),
                "FITLAKE_SQL_SCHEDULE": "none",
                "FITLAKE_KAFKA_SCHEDULE": "none",
                "FITLAKE_MONITOR_SCHEDULE": "none",
                # a task that a loaded machine fails before it starts is retried, quickly
                "FITLAKE_MONITOR_RETRIES": "1",
                "FITLAKE_MONITOR_RETRY_DELAY_SECONDS": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
                **connections,
                **(extra_env or {}),
            },
        )
        self.settings = None
        self.server = None
        self.api: Api | None = None

    @property
    def warehouse(self) -> Path:
        return self.data_root / "warehouse" / "fitlake.duckdb"

    def build_data(self, members: int, gyms: int, days: int, seed: int) -> None:
        from ingestion.land_kafka import land_kafka_topics
        from ingestion.land_sql import land_sql_tables
        from ingestion.simulate import default_start, simulate
        from ingestion.stack import stack_up
        from launchers.airflow_env import prepare_home
        from launchers.pipeline import in_env

        prepare_home(self.env)
        self.settings = in_env(self.env)
        stack_up(self.settings)
        simulate(
            self.settings,
            members=members,
            gyms=gyms,
            days=days,
            seed=seed,
            start=default_start(days, datetime.now(UTC)),
        )
        land_sql_tables(self.settings)
        land_kafka_topics(self.settings)
        self.dbt_build()

    def dbt_build(self) -> None:
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        project = REPO_ROOT / "dbt_project"
        done = subprocess.run(
            [
                str(VENV_BIN / "dbt"),
                "build",
                "--exclude",
                "tag:health",
                "--project-dir",
                str(project),
                "--profiles-dir",
                str(project),
                "--target-path",
                str(self.root / "dbt_target"),
            ],
            env={
                **os.environ,
                "FITLAKE_WAREHOUSE": str(self.warehouse),
                "FITLAKE_LANDING_ROOT": str(self.data_root / "landing"),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
                "DBT_EXCLUDE_RESOURCE_TYPES": "unit_test",
            },
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-3000:]

    def start_airflow(self) -> Api:
        from launchers.standalone import Standalone

        self.server = Standalone(self.env, log_path=self.root / "standalone.log").start(timeout=240)
        self.api = Api(self.server.url)
        self.api.login("admin", self.env["_FITLAKE_AIRFLOW_PASSWORD"])
        deadline = time.monotonic() + 120
        while self.api.call("GET", "/api/v2/dags/monitor", token=self.api.token)[0] != 200:
            assert time.monotonic() < deadline, "the monitor DAG was not parsed; see " + str(self.server.log_path)
            time.sleep(2)
        self.api.json("PATCH", "/api/v2/dags/monitor", {"is_paused": False})
        return self.api

    def run_monitor(self, conf: dict | None = None, timeout: float = 300) -> dict:
        """Trigger the monitor DAG and wait for its end; returns the run with its task states."""
        run = self.api.json("POST", "/api/v2/dags/monitor/dagRuns", {"logical_date": None, "conf": conf or {}})
        run_id = run["dag_run_id"]
        deadline = time.monotonic() + timeout
        while run["state"] not in ("success", "failed"):
            assert time.monotonic() < deadline, f"monitor run {run_id} still {run['state']}"
            time.sleep(1)
            try:
                run = self.api.json("GET", f"/api/v2/dags/monitor/dagRuns/{run_id}")
            except (ConnectionError, TimeoutError, urllib.error.URLError):
                continue  # a loaded 2-core machine can leave the api-server busy for a while: ask again
        tasks = self.api.json("GET", f"/api/v2/dags/monitor/dagRuns/{run_id}/taskInstances")
        run["task_states"] = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        return run

    def history(self, run_id: str | None = None) -> list[dict]:
        import duckdb

        sys.path.insert(0, str(REPO_ROOT / "dags"))
        from fitlake_common.health import history_sql

        sql = f"select * from {history_sql(self.data_root / 'health' / 'history')}"
        with duckdb.connect() as con:
            cursor = con.execute(sql + (" where run_id = ?" if run_id else ""), [run_id] if run_id else [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def stop(self) -> None:
        from ingestion.stack import stack_down

        try:
            if self.server is not None:
                self.server.stop()
        finally:
            if self.settings is not None:
                stack_down(self.settings)
            self.smtp.stop()
            self.webhook.stop()
