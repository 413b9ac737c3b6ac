"""A real Apache Kafka 4.x broker (KRaft, single combined node) for tests.

The broker is assembled from Apache Kafka's own jars on Maven Central (see
``pom.xml`` beside this file): Maven copies ``kafka_2.13`` and its runtime
dependencies into a cache directory shared between runs, and the broker is run
as ``java -cp '<libs>/*' kafka.Kafka server.properties``.

Typical use::

    from tests.support.real_kafka import start_real_kafka

    with start_real_kafka(tmp_path) as kafka:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka.bootstrap})
        ...

Requirements: ``java`` (17+) and ``mvn`` on PATH, network access to Maven
Central the first time (later runs use the cache), and ``confluent_kafka``
for the readiness check.

Environment variables:

* ``FITLAKE_CACHE_DIR``: cache root (default ``~/.cache/fitlake``); jars go to
  ``<root>/kafka-<version>/libs``.
* ``FITLAKE_KAFKA_LIBS``: use this directory of jars as is (no Maven at all).
* ``FITLAKE_KAFKA_JAVA_OPTS``: extra JVM options appended to the defaults.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "KafkaSetupError",
    "RealKafkaBroker",
    "ensure_kafka_jars",
    "kafka_cache_dir",
    "start_real_kafka",
]

_HERE = Path(__file__).resolve().parent
POM_PATH = _HERE / "pom.xml"


def _read_kafka_version() -> str:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM_PATH.read_text())
    if not m:  # pragma: no cover - the pom is ours
        raise RuntimeError(f"no <kafka.version> property in {POM_PATH}")
    return m.group(1).strip()


KAFKA_VERSION = _read_kafka_version()

# JVM options: small heap, fast startup (C1 only), serial GC; the machine is
# small and shared.
DEFAULT_JAVA_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)

_MARKER_NAME = ".complete"


class KafkaSetupError(RuntimeError):
    """Kafka jars could not be resolved or the broker could not be started."""


def _log(msg: str) -> None:
    print(f"[real_kafka] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Jars
# --------------------------------------------------------------------------


def kafka_cache_dir() -> Path:
    """``${FITLAKE_CACHE_DIR:-~/.cache/fitlake}/kafka-<version>``."""
    root = os.environ.get("FITLAKE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "fitlake"
    return base / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def _libs_ready(libs: Path, marker: Path, digest: str) -> bool:
    try:
        return marker.read_text().strip() == digest and any(libs.glob("kafka_2.13-*.jar"))
    except OSError:
        return False


def ensure_kafka_jars() -> Path:
    """Return a directory holding the Kafka broker's jars, resolving them once.

    Fast (no Maven call) when the cache is complete for the current pom.xml.
    A lock file keeps concurrent processes from resolving at the same time.
    """
    override = os.environ.get("FITLAKE_KAFKA_LIBS")
    if override:
        libs = Path(override).expanduser()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaSetupError(f"FITLAKE_KAFKA_LIBS={libs} holds no kafka_2.13-*.jar")
        return libs

    cache = kafka_cache_dir()
    libs = cache / "libs"
    marker = cache / _MARKER_NAME
    digest = _pom_digest()
    if _libs_ready(libs, marker, digest):
        return libs

    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _libs_ready(libs, marker, digest):  # another process did it
                return libs
            _resolve_with_maven(cache, libs, marker, digest)
            return libs
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resolve_with_maven(cache: Path, libs: Path, marker: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaSetupError(
            "Apache Maven ('mvn') is not on PATH; it is needed once to fetch the "
            f"Kafka {KAFKA_VERSION} jars from Maven Central (e.g. apt-get install maven), "
            "or point FITLAKE_KAFKA_LIBS at a directory of jars."
        )
    tmp = cache / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    marker.unlink(missing_ok=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-f",
        str(POM_PATH),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    _log(f"resolving Kafka {KAFKA_VERSION} jars with Maven into {libs} (first time only, may take a minute or two)...")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise KafkaSetupError(
            f"Maven failed to resolve Kafka {KAFKA_VERSION} jars (exit {proc.returncode}): {' '.join(cmd)}\n{tail}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(digest + "\n")
    n = len(list(libs.glob("*.jar")))
    _log(f"resolved {n} jars in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------
# Broker
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_cluster_id() -> str:
    # Same shape as org.apache.kafka.common.Uuid.randomUuid().toString():
    # 16 random bytes, URL-safe base64 without padding, not starting with '-'.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


_LOG4J2_PROPERTIES = """\
status = warn
# Keep logging alive until Kafka's own shutdown hook has finished.
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""

_live_brokers: set[RealKafkaBroker] = set()


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - safety net
    for broker in list(_live_brokers):
        with contextlib.suppress(Exception):
            broker.stop()


class RealKafkaBroker:
    """A single-node KRaft Kafka (broker+controller) running in a subprocess.

    ``workdir`` receives ``server.properties``, ``log4j2.properties``, the
    data directory ``data/`` and the broker's log ``kafka.log``.
    ``extra_props`` override or add server properties.
    """

    def __init__(
        self,
        workdir: Path,
        partitions_default: int = 3,
        extra_props: Mapping[str, object] | None = None,
        startup_timeout: float = 90.0,
        stop_grace: float = 20.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.partitions_default = partitions_default
        self.extra_props: dict[str, str] = {k: str(v) for k, v in (extra_props or {}).items()}
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.port: int | None = None
        self.controller_port: int | None = None
        self.cluster_id: str | None = None
        self.log_path = self.workdir / "kafka.log"
        self.config_path = self.workdir / "server.properties"
        self.data_dir = self.workdir / "data"
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # ---- public -----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RealKafkaBroker:
        if self.is_running():
            return self
        libs = ensure_kafka_jars()
        java = shutil.which("java")
        if not java:
            raise KafkaSetupError("'java' (17+) is not on PATH; the Kafka broker needs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        last_err: Exception | None = None
        for _attempt in range(3):  # retry only on a lost port race
            try:
                self._start_once(java, libs)
                _log(
                    f"Kafka {KAFKA_VERSION} ready at {self.bootstrap} "
                    f"in {time.monotonic() - t0:.1f}s (log: {self.log_path})"
                )
                return self
            except _PortInUse as e:
                last_err = e
                self.stop()
        raise KafkaSetupError(f"could not bind free ports after 3 attempts: {last_err}")

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``stop_grace`` seconds."""
        proc, self._proc = self._proc, None
        _live_brokers.discard(self)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=30)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL the broker (a crash): its data directory and ports stay for :meth:`restart`."""
        proc, self._proc = self._proc, None
        _live_brokers.discard(self)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=30)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> RealKafkaBroker:
        """Start the killed broker again on the same ports and data (it recovers its logs)."""
        if self.is_running():
            return self
        self._launch(shutil.which("java"), ensure_kafka_jars())
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def __enter__(self) -> RealKafkaBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- internals ----------------------------------------------------------

    def _java_cmd(self, java: str, libs: Path, main: str, *args: str) -> list:
        extra = os.environ.get("FITLAKE_KAFKA_JAVA_OPTS", "").split()
        return [
            java,
            *DEFAULT_JAVA_OPTS,
            *extra,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _server_properties(self) -> dict[str, str]:
        p, c = self.port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.partitions_default),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            # One partition each for internal topics: quicker first group join.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "controlled.shutdown.enable": "true",
            # The tests' records carry the recorded data's timestamps (2023-2024): the default 7-day retention
            # deleted them at its next check, in the middle of a test (CI, stop 13 and 14). Retention mid-landing
            # has a test of its own (DeleteRecords).
            "log.retention.ms": "-1",
        }
        props.update(self.extra_props)
        return props

    def _start_once(self, java: str, libs: Path) -> None:
        self.port, self.controller_port = _free_port(), _free_port()
        while self.controller_port == self.port:
            self.controller_port = _free_port()
        self.cluster_id = _random_cluster_id()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self._server_properties().items()))

        fmt = subprocess.run(
            self._java_cmd(
                java,
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(self.config_path),
                "--ignore-formatted",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise KafkaSetupError(f"kafka-storage format failed (exit {fmt.returncode}):\n{fmt.stdout[-4000:]}")

        self._launch(java, libs)

    def _launch(self, java: str, libs: Path) -> None:
        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            self._java_cmd(java, libs, "kafka.Kafka", str(self.config_path)),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,
        )
        _live_brokers.add(self)
        self._wait_ready()

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self.startup_timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "logger": _quiet_logger})
        last_err: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                tail = self.log_tail()
                if "Address already in use" in tail:
                    raise _PortInUse(tail)
                raise KafkaSetupError(f"Kafka exited during startup (code {code}); log {self.log_path}:\n{tail}")
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception as e:  # KafkaException while not up yet
                last_err = e
            time.sleep(0.25)
        self.stop()
        raise KafkaSetupError(
            f"Kafka not ready at {self.bootstrap} after {self.startup_timeout:.0f}s "
            f"(last error: {last_err}); log {self.log_path}:\n{self.log_tail()}"
        )


class _PortInUse(KafkaSetupError):
    pass


# Swallows librdkafka's connection-refused noise while the broker boots.
_quiet_logger = logging.getLogger("fitlake.real_kafka.readiness")
_quiet_logger.addHandler(logging.NullHandler())
_quiet_logger.propagate = False


@contextlib.contextmanager
def start_real_kafka(
    workdir: Path,
    partitions_default: int = 3,
    extra_props: Mapping[str, object] | None = None,
    startup_timeout: float = 90.0,
) -> Iterator[RealKafkaBroker]:
    """Start a broker in ``workdir``; yield it (``.bootstrap``); stop it on exit."""
    broker = RealKafkaBroker(
        workdir, partitions_default=partitions_default, extra_props=extra_props, startup_timeout=startup_timeout
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
