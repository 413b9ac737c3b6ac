"""Airflow as separate components on the CeleryExecutor: api-server, scheduler, dag-processor, triggerer
and Celery workers, each its own process (what docker-compose.yml runs, one per container).

`airflow standalone` cannot do this: it forces the LocalExecutor and starts no worker. The environment
is the one `launchers.airflow_env` builds, plus `celery_env()`. Each worker has a name that Airflow
records as the task instance's hostname (`worker_hostname`), so a test can see which worker ran what.
Components stop with SIGTERM (each is its own process group; what a component leaves behind is reaped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from launchers.airflow_api import AirflowApi
from launchers.airflow_env import VENV_BIN, free_port

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
WORKER_NAME_VARIABLE = "FITLAKE_WORKER_NAME"


def worker_hostname() -> str:
    """Airflow's `hostname_callable` for the test workers: the worker's name (they share one machine)."""
    import socket

    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()


def celery_env(broker_url: str) -> dict[str, str]:
    """The CeleryExecutor on a Redis broker (db 0), task states in Redis too (db 1): the metadata DB stays
    with the scheduler, the workers reach Airflow through the API server only."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"{broker_url}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{broker_url}/1",
        # a busy 2-core machine: sending a task to the broker may take more than the default second
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
    }


@dataclass
class Component:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_offset: int = 0  # where this start's output begins in the (appended) log

    def start(self) -> Component:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 45.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reap_group()

    def _reap_group(self, grace: float = 10.0) -> None:
        """Children a component left behind (task supervisors, log servers) would keep ports and files."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + grace
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                return
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.process.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)


@dataclass(frozen=True)
class Worker:
    name: str
    queues: tuple[str, ...]
    concurrency: int = 2


class CeleryAirflow:
    """The four Airflow components and the Celery workers of one Airflow home; `url` like `Standalone`."""

    def __init__(self, env: dict[str, str], workers: list[Worker], log_dir: Path):
        self.env = env
        self.workers = workers
        self.log_dir = Path(log_dir)
        self.url = env["AIRFLOW__API__BASE_URL"]
        self.components: dict[str, Component] = {}

    def _component(self, name: str, env: dict[str, str]) -> Component:
        worker = next((w for w in self.workers if w.name == name), None)
        if worker is None:
            command = [str(VENV_BIN / "airflow"), name]
        else:
            # each worker its own log server port and pid file: they share one machine and one home
            env = {
                **env,
                WORKER_NAME_VARIABLE: worker.name,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
            command = [str(VENV_BIN / "airflow"), "celery", "worker", "--queues", ",".join(worker.queues)]
            command += ["--concurrency", str(worker.concurrency), "--celery-hostname", f"{worker.name}@%h"]
            command += ["--pid", str(self.log_dir / f"{worker.name}.pid"), "--without-mingle", "--without-gossip"]
        return Component(name, command, env, self.log_dir / f"{name}.log")

    def start(self, timeout: float = 300.0) -> CeleryAirflow:
        for name in [*COMPONENTS, *(w.name for w in self.workers)]:
            self.components[name] = self._component(name, self.env).start()
        self.wait_ready(timeout)
        return self

    def restart(self, names: list[str], env_changes: dict[str, str], timeout: float = 300.0) -> None:
        """Stop the named components and start them again with `env_changes` (a configuration roll-out)."""
        for name in names:
            old = self.components[name]
            old.stop()
            self.components[name] = self._component(name, {**old.env, **env_changes}).start()
        self.wait_ready(timeout)

    def health(self) -> dict:
        status, body = AirflowApi(self.url, timeout=5).call("GET", "/api/v2/monitor/health")
        if status != 200:
            return {}
        import json

        return json.loads(body)

    def _worker_ready(self, name: str) -> bool:
        return f"{name}@" in (output := self.components[name].output()) and " ready." in output

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [c for c in self.components.values() if not c.running()]
            if dead:
                self.stop()
                tails = "\n".join(f"--- {c.name}:\n" + "\n".join(c.output().splitlines()[-15:]) for c in dead)
                raise RuntimeError(f"Airflow component(s) exited: {', '.join(c.name for c in dead)}\n{tails}")
            try:
                health = self.health()
            except OSError:
                health = {}
            healthy = all(
                health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "triggerer", "dag_processor")
            )
            workers = all(self._worker_ready(w.name) for w in self.workers)
            if healthy and workers:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"Airflow on Celery not ready within {timeout:.0f}s (health {health}); see {self.log_dir}"
                )
            time.sleep(1)

    def stop(self) -> None:
        # first no new work (the scheduler), then the rest together: workers finish what they run
        if "scheduler" in self.components:
            self.components["scheduler"].stop()
        rest = [c for name, c in self.components.items() if name != "scheduler"]
        for component in rest:
            component.terminate()
        for component in rest:
            component.stop()
