"""A throwaway Redis (Debian's redis-server) for tests: a free port on 127.0.0.1, no persistence, stopped after."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ingestion.stack import free_port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def throwaway_redis(timeout: float = 30.0):
    """Yield `redis://127.0.0.1:<port>`; the server is stopped (by PID) and its directory deleted after."""
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server not found: run `make setup-dev` (installs Debian's redis-server)")
    root = Path(tempfile.mkdtemp(prefix="fitlake-redis-"))
    port = free_port()
    with open(root / "redis.log", "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(root),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + timeout
        while not _ping(port):
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}: {(root / 'redis.log').read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server did not answer on {port} within {timeout:.0f}s")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
