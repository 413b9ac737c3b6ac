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
        self.url = env["AIRFLOW__API__BASE_URL"]
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
        self.warm_execution_api()
        return self

    def warm_execution_api(self) -> None:
        """The api-server's first request to its task execution API takes ~3 s (later ones milliseconds), and
        every task of the first cycle after start-up waited for it: the first demo cycle's landings took 3.3 s
        longer. One request now pays it before anything is triggered."""
        try:
            urllib.request.urlopen(f"{self.url}/execution/health", timeout=30).close()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # the first task only starts slower

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
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGTERM)
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.process.wait()
        self._reap_group()
        return self.process.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def _reap_group(self, grace: float = 10.0) -> None:
        """A component that outlived standalone (it died first, or ignored SIGINT) would keep the ports and
        the metadata DB: stop whatever is left of the process group, gently first."""
        deadline = time.monotonic() + grace
        self._signal_group(signal.SIGTERM)
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        self._signal_group(signal.SIGKILL)

    def __enter__(self) -> Standalone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
