"""A small client of Airflow's REST API v2: log in, trigger DAG runs, wait for them, read their tasks.

What `make demo`, `make bench-airflow` and tests/dags use to drive a running Airflow the way a user's
tooling would (no direct access to the metadata DB).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime

FINISHED_RUN_STATES = {"success", "failed"}


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500].decode(errors='replace')}")
        self.status = status


@dataclass
class TaskInstance:
    task_id: str
    state: str | None
    start: datetime | None
    end: datetime | None
    duration: float | None
    try_number: int

    @classmethod
    def from_api(cls, item: dict) -> TaskInstance:
        return cls(
            task_id=item["task_id"],
            state=item["state"],
            start=parse_time(item.get("start_date")),
            end=parse_time(item.get("end_date")),
            duration=item.get("duration"),
            try_number=item.get("try_number") or 0,
        )


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class AirflowApi:
    def __init__(self, base_url: str, timeout: float = 60.0):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.token: str | None = None

    def call(self, method: str, path: str, body=None, *, token: str | None = None, cookie: str | None = None,
             accept: str = "application/json") -> tuple[int, bytes]:  # fmt: skip
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
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method: str, path: str, body=None):
        status, data = self.call(method, path, body, token=self.token)
        if status >= 300:
            raise ApiError(method, path, status, data)
        return json.loads(data) if data else None

    def login(self, username: str, password: str) -> str:
        status, data = self.call("POST", "/auth/token", {"username": username, "password": password})
        if status != 201:
            raise ApiError("POST", "/auth/token", status, data)
        self.token = json.loads(data)["access_token"]
        return self.token

    # --- DAGs and runs ---------------------------------------------------------------------------

    def wait_for_dags(self, *dag_ids: str, timeout: float = 180) -> None:
        """Until the DAG processor has parsed every DAG named (a fresh Airflow home has none)."""
        deadline = time.monotonic() + timeout
        for dag_id in dag_ids:
            while self.call("GET", f"/api/v2/dags/{dag_id}", token=self.token)[0] != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the DAG processor did not parse {dag_id} within {timeout:.0f}s")
                time.sleep(1)

    def unpause(self, *dag_ids: str) -> None:
        for dag_id in dag_ids:
            self.json("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.json("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 0.25) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll)

    def wait_until_idle(self, dag_id: str, timeout: float = 600, settle: float = 3.0, poll: float = 0.25) -> list[dict]:
        """Until no run of `dag_id` is queued or running for `settle` seconds; returns all its runs."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while True:
            runs = self.runs(dag_id)
            busy = [r for r in runs if r["state"] not in FINISHED_RUN_STATES]
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= settle:
                return runs
            if now > deadline:
                raise TimeoutError(f"{dag_id} still has runs in flight after {timeout:.0f}s: {busy}")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances?limit=1000"
        return [TaskInstance.from_api(item) for item in self.json("GET", path)["task_instances"]]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti.task_id: ti.state for ti in self.task_instances(dag_id, run_id)}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
            f"{urllib.parse.quote(task_id, safe='')}/logs/{try_number}?full_content=true"
        )
        status, body = self.call("GET", path, token=self.token, accept="application/json")
        if status >= 300:
            raise ApiError("GET", path, status, body)
        content = json.loads(body).get("content", [])
        if not isinstance(content, list):
            return str(content)
        # structured lines: the level, the logger and the message, as the UI shows them
        return "\n".join(
            f"[{part.get('level', '')}] {part.get('logger', '')}: {part.get('event', '')}"
            if isinstance(part, dict)
            else str(part)
            for part in content
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str):
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
            f"{urllib.parse.quote(task_id, safe='')}/xcomEntries/{urllib.parse.quote(key, safe='')}?deserialize=true"
        )
        status, body = self.call("GET", path, token=self.token)
        if status == 404:
            return None
        if status >= 300:
            raise ApiError("GET", path, status, body)
        return json.loads(body).get("value")
