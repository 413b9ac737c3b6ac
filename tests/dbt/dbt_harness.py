"""Drive real dbt (in-process, dbtRunner) on a temporary warehouse and landing root.

All tests of a session share one landing root and one warehouse path (wiped before each use),
so the environment variables stay constant and dbt can reuse its partial parse between runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import pytest
from landing_fixtures import LandingWriter

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

    def invoke(self, *args: str, as_of_date: str = AS_OF_DATE):
        from dbt.cli.main import dbtRunner

        os.environ["FITLAKE_WAREHOUSE"] = str(self.warehouse)
        os.environ["FITLAKE_LANDING_ROOT"] = str(self.landing)
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
                    "--quiet",
                ]
            )
        finally:
            os.chdir(cwd)
            _release_warehouse()
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
