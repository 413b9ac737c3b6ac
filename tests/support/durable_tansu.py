"""The embedded broker (Tansu) on S3 storage, so that it can be killed and restarted without losing messages.

The stack runs Tansu with ``memory://`` storage: a killed broker forgets everything. Tansu's ``s3://``
engine keeps the log in a bucket; here the bucket lives in moto's S3 server (a local process, from
requirements-dev.txt), so the broker can be SIGKILLed and started again on the same port with its data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ingestion.stack import _port_open, free_port, tansu_binary

BUCKET = "tansu"


def _wait_for(bootstrap: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}; see {log}")
        if _port_open(bootstrap):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {bootstrap} after {timeout:.0f}s; see {log}")


def _stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


class DurableTansu:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.s3_port = free_port()
        self.log_path = workdir / "tansu.log"
        self._moto: subprocess.Popen | None = None
        self._broker: subprocess.Popen | None = None

    def start(self) -> DurableTansu:
        self.workdir.mkdir(parents=True, exist_ok=True)
        moto_log = self.workdir / "moto.log"
        moto = Path(sys.executable).with_name("moto_server")
        with open(moto_log, "ab") as out:
            self._moto = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.s3_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for(f"127.0.0.1:{self.s3_port}", self._moto, moto_log)
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{self.s3_port}/{BUCKET}", method="PUT"), timeout=10
        )
        self.restart()
        return self

    def restart(self) -> None:
        """Start the broker (again) on the same port and bucket."""
        url = f"tcp://{self.bootstrap}"
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "fitlake-test",
            "AWS_SECRET_ACCESS_KEY": "fitlake-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ALLOW_HTTP": "true",
        }
        command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
        with open(self.log_path, "ab") as out:
            self._broker = subprocess.Popen(
                [*command, "--storage-engine", f"s3://{BUCKET}/"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for(self.bootstrap, self._broker, self.log_path)

    def kill(self) -> None:
        """SIGKILL the broker (a crash); the bucket keeps its log."""
        _stop(self._broker, signal.SIGKILL)

    def stop(self) -> None:
        _stop(self._broker)
        _stop(self._moto)


@contextlib.contextmanager
def durable_tansu(workdir: Path) -> Iterator[DurableTansu]:
    broker = DurableTansu(workdir)
    try:
        yield broker.start()
    finally:
        broker.stop()
