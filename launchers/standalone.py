"""Start and stop `airflow standalone` cleanly (SIGINT: SIGTERM would orphan its workers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from launchers.airflow_env import VENV_BIN


def _default_sigint() -> None:
    """A launcher started in the background inherits SIGINT ignored; standalone must obey our SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Standalone:
    def __init__(self, env: dict[str, str], log_path: Path | None = None):
        self.env = env
        self.port = int(env["AIRFLOW__API__PORT"])
        self.url = f"http://localhost:{self.port}"
        self.log_path = Path(log_path or Path(env["AIRFLOW_HOME"]) / "standalone.log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> Standalone:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own session: a terminal's Ctrl-C reaches only us, and we hand standalone one SIGINT.
            self.process = subprocess.Popen(
                [str(VENV_BIN / "airflow"), "standalone"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )
        self.wait_healthy(timeout)
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self.process.returncode}; see {self.log_path}")
            health = self.health()
            if health and health.get("scheduler", {}).get("status") == "healthy":
                return
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"airflow standalone not healthy on {self.url} within {timeout:.0f}s; see {self.log_path}")

    def stop(self, grace: float = 60.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                return self.process.wait()

    def __enter__(self) -> Standalone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
