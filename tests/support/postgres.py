"""A throwaway PostgreSQL cluster for tests: initdb into a temp dir, start on a free port, stop after."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ingestion.stack import free_port


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: run `make setup` (installs Debian's postgresql)")
    return Path(candidates[-1]).parent


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; run its tools as the postgres system user.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port, that a test may stop and start."""

    def __init__(self):
        self.bin_dir = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="fitlake-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = free_port()
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def odbc(self) -> str:
        return (
            f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={self.port};Database=postgres;Uid=postgres;"
            "BoolsAsChar=0;"
        )

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]), check=check, capture_output=True
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self.pg_ctl("-l", str(self.root / "pg.log"), "-w", "-o", options, "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: every backend is killed, no checkpoint; the next start recovers."""
        self.pg_ctl("-m", mode, "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_cluster():
    """A started :class:`PostgresCluster`; stopped and deleted after."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@contextmanager
def throwaway_postgres():
    """Yield an ODBC connection string for a fresh cluster; the cluster is stopped and deleted after."""
    with postgres_cluster() as cluster:
        yield cluster.odbc
