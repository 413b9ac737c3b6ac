"""A Spark Thrift server (HiveServer2 protocol) with Delta Lake, on this machine: one shared Spark.

What `FITLAKE_DBT_TARGET=spark` with `FITLAKE_SPARK_METHOD=thrift` talks to (dbt-spark's thrift method,
PyHive). The server is the one JVM: it holds the Derby metastore and runs every dbt process's SQL, so
any number of dbt processes (a build, docs, a reader) can connect at once, and none starts a JVM.

Spark comes from the pyspark wheel (requirements-spark.txt: its jars include the Thrift server), the
Delta jars from `tests.support.spark_delta`. The server's confs are dags/deploy/spark-defaults.conf
(the SQL semantics the dbt project is written for, as on the profile's session target), as for
docker-compose.yml's `spark-thrift` service, plus where this one keeps its warehouse.

    with SparkThriftServer(tmp / "spark") as server:   # a free port on 127.0.0.1, stopped after
        env = {**env, **server.dbt_env()}
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from ingestion.stack import free_port
from tests.support.spark_delta import ensure_delta_jars

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
SPARK_DEFAULTS = Path(__file__).resolve().parents[2] / "dags" / "deploy" / "spark-defaults.conf"


def spark_home() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def server_confs(warehouse: Path, jars: list[Path], shuffle_partitions: int = 2) -> dict[str, str]:
    """Where this server keeps things and how big it is; the semantics are in SPARK_DEFAULTS."""
    classpath = ":".join(str(j) for j in jars)
    metastore = f"jdbc:derby:;databaseName={warehouse}/_metastore_db;create=true"
    return {
        # Delta on the driver's own classpath: jars added with --jars reach only the first session's loader
        "spark.driver.extraClassPath": classpath,
        "spark.executor.extraClassPath": classpath,
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.hadoop.javax.jdo.option.ConnectionURL": metastore,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "false",
        "spark.ui.enabled": "false",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
    }


class SparkThriftServer:
    """`spark-submit --class HiveThriftServer2` in local[cores] mode, on a free port; stopped by PID."""

    def __init__(
        self,
        warehouse: Path,
        *,
        port: int | None = None,
        cores: int = 2,
        driver_memory: str = "2g",
        log_path: Path | None = None,
    ):
        self.warehouse = Path(warehouse).resolve()
        self.port = port or free_port()
        self.cores = cores
        self.driver_memory = driver_memory
        self.log_path = Path(log_path or self.warehouse.parent / "spark-thrift.log")
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        home = spark_home()
        confs = server_confs(self.warehouse, ensure_delta_jars())
        args = [str(home / "bin" / "spark-submit"), "--class", THRIFT_SERVER_CLASS, "--name", "fitlake-thrift"]
        args += ["--master", f"local[{self.cores}]", "--driver-memory", self.driver_memory]
        args += ["--properties-file", str(SPARK_DEFAULTS)]
        # Derby writes derby.log and its system files here, not into the working directory
        # C1 only and the serial collector: a short-lived server on few cores spends less CPU compiling
        java_options = f"-Dderby.system.home={self.warehouse} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
        args += ["--driver-java-options", java_options]
        for key, value in confs.items():
            args += ["--conf", f"{key}={value}"]
        args += ["spark-internal", "--hiveconf", f"hive.server2.thrift.port={self.port}"]
        args += ["--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1"]
        return args

    def start(self, timeout: float = 240.0) -> SparkThriftServer:
        self.warehouse.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOG_DIR": str(self.warehouse.parent)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=env,
                cwd=self.warehouse,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Spark Thrift server exited with {self.process.returncode}; see {self.log_path}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(
            f"the Spark Thrift server did not listen on {self.port} within {timeout:.0f}s; see {self.log_path}"
        )

    def dbt_env(self) -> dict[str, str]:
        """What the `spark` target needs to reach this server (dbt_project/profiles.yml)."""
        return {
            "FITLAKE_DBT_TARGET": "spark",
            "FITLAKE_SPARK_METHOD": "thrift",
            "FITLAKE_SPARK_HOST": "127.0.0.1",
            "FITLAKE_SPARK_PORT": str(self.port),
        }

    def query(self, sql: str) -> list[tuple]:
        from pyhive import hive

        connection = hive.connect(host="127.0.0.1", port=self.port, username="fitlake-tests")
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def stop(self, grace: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> SparkThriftServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
