"""Drive real dbt (in-process, dbtRunner) on a temporary warehouse and landing root.

All tests of a session share one landing root and one warehouse path (wiped before each use),
so the environment variables stay constant and dbt can reuse its partial parse between runs.

`Dbt` builds the DuckDB target (`dev`); `SparkDbt` the `spark` target (dbt-spark, method
session: Spark runs in this process, one JVM for the whole test session, Delta tables in a
temporary warehouse, in-memory catalog), reading the landing root of a `Dbt` so both engines
build the same files.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import pytest
from landing_fixtures import LandingWriter

# doubles may differ in the last bits between engines (the order of a sum)
DOUBLE_TOLERANCE = 1e-9

REPO = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO / "dbt_project"
AS_OF_DATE = "2024-06-15"

# Contract columns per table (lineage columns such as load_time and source_file are left out:
# they legitimately differ between an incremental run and a full refresh).
CONTRACT_COLUMNS: dict[str, list[str]] = {
    "silver.users": ["user_id", "device_id", "mac_address", "registration_timestamp"],
    "silver.gym_logs": ["mac_address", "gym", "login", "logout"],
    "silver.user_profile": [
        "user_id",
        "dob",
        "sex",
        "gender",
        "first_name",
        "last_name",
        "street_address",
        "city",
        "state",
        "zip",
        "updated",
    ],
    "silver.workouts": ["user_id", "workout_id", '"time"', "action", "session_id"],
    "silver.heart_rate": ["device_id", '"time"', "heartrate", "valid"],
    "silver.user_bins": ["user_id", "age", "gender", "city", "state"],
    "silver.completed_workouts": ["user_id", "workout_id", "session_id", "start_time", "end_time"],
    "silver.workout_bpm": [
        "user_id",
        "workout_id",
        "session_id",
        "start_time",
        "end_time",
        '"time"',
        "heartrate",
    ],
    "silver.quarantine": [
        "source_table",
        "topic",
        "kafka_partition",
        "kafka_offset",
        "raw_key",
        "raw_record",
        "reason",
    ],
    "gold.workout_bpm_summary": [
        "workout_id",
        "session_id",
        "user_id",
        "age",
        "gender",
        "city",
        "state",
        "min_bpm",
        "avg_bpm",
        "max_bpm",
        "num_recordings",
    ],
    "gold.gym_summary": [
        "date",
        "gym",
        "mac_address",
        "workout_id",
        "session_id",
        "minutes_in_gym",
        "minutes_exercising",
        "user_id",
        "login",
    ],
}


class Dbt:
    """One landing root + one warehouse, and dbt invocations against them."""

    target_name = "dev"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.landing = workdir / "landing"
        self.warehouse = workdir / "warehouse" / "fitlake.duckdb"
        self.target = workdir / "target"
        self.logs = workdir / "logs"
        self.reset()

    def reset(self) -> LandingWriter:
        """Empty landing zone and no warehouse; returns a fresh writer."""
        shutil.rmtree(self.landing, ignore_errors=True)
        shutil.rmtree(self.warehouse.parent, ignore_errors=True)
        self.landing.mkdir(parents=True)
        self.warehouse.parent.mkdir(parents=True)
        self.writer = LandingWriter(self.landing)
        return self.writer

    def _environment(self) -> dict[str, str]:
        return {"FITLAKE_WAREHOUSE": str(self.warehouse), "FITLAKE_LANDING_ROOT": str(self.landing)}

    def invoke(self, *args: str, as_of_date: str = AS_OF_DATE):
        from dbt.cli.main import dbtRunner

        os.environ.update(self._environment())
        cwd = os.getcwd()
        try:
            result = dbtRunner().invoke(
                [
                    *args,
                    "--project-dir",
                    str(PROJECT_DIR),
                    "--profiles-dir",
                    str(PROJECT_DIR),
                    "--target-path",
                    str(self.target),
                    "--log-path",
                    str(self.logs),
                    "--log-level-file",
                    "info",
                    "--vars",
                    f"{{as_of_date: '{as_of_date}'}}",
                    "--target",
                    self.target_name,
                    "--quiet",
                ]
            )
        finally:
            os.chdir(cwd)
            self._release()
        if result.exception is not None:
            raise result.exception
        return result

    def build(self, *args: str, expect_success: bool = True, **kwargs):
        result = self.invoke("build", *args, **kwargs)
        if expect_success and not result.success:
            failures = [
                f"{r.node.unique_id}: {r.status} {r.message}"
                for r in result.result
                if str(r.status) not in ("success", "pass", "warn")
            ]
            raise AssertionError("dbt build failed:\n" + "\n".join(failures))
        return result

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.sql(sql).fetchall()

    def rows(self, table: str, columns: Sequence[str] | None = None) -> list[tuple]:
        """All rows of `table` (contract columns by default), sorted."""
        cols = ", ".join(columns or CONTRACT_COLUMNS[table])
        return sorted(self.query(f"select {cols} from {table}"), key=_sort_key)

    def snapshot(self, tables: Iterable[str] = CONTRACT_COLUMNS, all_columns: bool = False) -> dict:
        return {t: self.rows(t, ["*"] if all_columns else None) for t in tables}

    def _release(self) -> None:
        _release_warehouse()


class SparkDbt(Dbt):
    """The `spark` target on the landing root of `duckdb` (its writer lands the files)."""

    target_name = "spark"
    SCHEMAS = ("bronze", "silver", "gold", "dbt_meta")

    def __init__(self, workdir: Path, duckdb: Dbt) -> None:
        self.duckdb = duckdb
        self.spark_warehouse = workdir / "spark-warehouse"
        self.workdir = workdir
        self.target = workdir / "target"
        self.logs = workdir / "logs"
        self.reset()

    @property
    def landing(self) -> Path:  # type: ignore[override]
        return self.duckdb.landing

    @property
    def writer(self) -> LandingWriter:  # type: ignore[override]
        return self.duckdb.writer

    def reset(self) -> LandingWriter:
        """No Spark tables (the landing zone is the DuckDB harness's: reset that one too)."""
        spark = active_spark_session()
        if spark is not None:
            for schema in self.SCHEMAS:
                spark.sql(f"drop database if exists {schema} cascade")
        shutil.rmtree(self.spark_warehouse, ignore_errors=True)
        return self.writer

    def _environment(self) -> dict[str, str]:
        from tests.support.spark_delta import spark_jars

        return {
            "FITLAKE_LANDING_ROOT": str(self.landing),
            "FITLAKE_SPARK_WAREHOUSE": str(self.spark_warehouse),
            "FITLAKE_SPARK_CATALOG": "in-memory",
            "FITLAKE_SPARK_JARS": spark_jars(),
            # tiny data, ~100 short statements per build: a JVM tuned for start-up (C1 only, a
            # serial GC) and no adaptive re-planning took ~15 % less time than the defaults
            "FITLAKE_SPARK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            "FITLAKE_SPARK_ADAPTIVE": "false",
            # `make test` runs two workers on two cores: Spark's tasks are tiny, its cost is per statement
            "FITLAKE_SPARK_CORES": "1",
        }

    def query(self, sql: str) -> list[tuple]:
        """Rows as Python values (timestamps naive UTC, as DuckDB returns them)."""
        spark = active_spark_session()
        assert spark is not None, "no Spark session yet: build first"
        table = spark.sql(sql.replace('"', "`")).toArrow()
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        return [tuple(_naive_utc(v) for v in row) for row in zip(*columns)]

    def _release(self) -> None:
        pass


def active_spark_session():
    """The Spark session dbt-spark started in this process, or None (never starts one: it
    would lack the profile's Delta settings)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is None:
        return None
    return SparkSession.builder.getOrCreate()


def stop_spark() -> None:
    """Stop this process's Spark session and its JVM."""
    from pyspark import SparkContext

    spark = active_spark_session()
    if spark is not None:
        spark.stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        proc = getattr(gateway, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        SparkContext._gateway = None
        SparkContext._jvm = None


def _naive_utc(value):
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def assert_same_rows(actual: Sequence[tuple], expected: Sequence[tuple], what: str) -> None:
    """Row for row equal, doubles within DOUBLE_TOLERANCE (relative)."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        same = len(a) == len(e) and all(
            math.isclose(x, y, rel_tol=DOUBLE_TOLERANCE) if isinstance(x, float) and isinstance(y, float) else x == y
            for x, y in zip(a, e)
        )
        assert same, f"{what}: row {i} differs:\n  {a}\n  {e}"


def _release_warehouse() -> None:
    """dbt-duckdb keeps the DuckDB database open in the process; close it so that the test
    (and the next invocation) can open the file itself."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()


def approx(value, rel: float = 1e-9):
    """`value` (rows, a snapshot) with every double wrapped in pytest.approx, for `==` with a tolerance.

    A mean of doubles depends in its last bits (~1e-13) on the order its terms were summed, which
    differs between an incremental run and a full refresh; everything else still compares exactly.
    """
    if isinstance(value, float):
        return pytest.approx(value, rel=rel, abs=1e-12)
    if isinstance(value, dict):
        return {key: approx(item, rel) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(approx(item, rel) for item in value)
    return value


def _sort_key(row: tuple) -> tuple:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in row)
