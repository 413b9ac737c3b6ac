"""Fixtures for the DAG tests: a fresh dbt manifest, an isolated Airflow home, the embedded stack."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"

for path in (str(DAGS_DIR), str(REPO_ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

# Importing airflow.sdk in this process (fitlake_common.landing/assets) must not touch ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="fitlake-test-airflow-home-"))


@pytest.fixture(scope="session")
def dbt_manifest(tmp_path_factory) -> Path:
    """`dbt parse` of the working tree into a scratch target dir (what `make dbt-manifest` does)."""
    target = tmp_path_factory.mktemp("dbt") / "target"
    project = REPO_ROOT / "dbt_project"
    done = subprocess.run(
        [
            str(VENV_BIN / "dbt"),
            "parse",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(target),
        ],
        env={
            **os.environ,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "FITLAKE_WAREHOUSE": str(target.parent / "parse.duckdb"),
        },
        capture_output=True,
        text=True,
        cwd=project,
    )
    assert done.returncode == 0, f"dbt parse failed:\n{done.stdout}\n{done.stderr}"
    return target / "manifest.json"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Pipeline:
    """An isolated FitLake installation: data root, Airflow home (SQLite), the embedded stack."""

    def __init__(self, root: Path, manifest: Path):
        from launchers.airflow_env import airflow_env, free_port

        self.root = root
        self.data_root = root / "data"
        self.home = root / "airflow"
        self.port = free_port()
        self.env = airflow_env(
            self.home,
            data_root=self.data_root,
            port=self.port,
            isolated_ports=True,
            extra={
                "FITLAKE_DBT_MANIFEST": str(manifest),
                "FITLAKE_SQL_SCHEDULE": "none",
                "FITLAKE_KAFKA_SCHEDULE": "none",
            },
        )
        self.settings = None
        self.logs = root / "logs"

    @property
    def warehouse(self) -> Path:
        return self.data_root / "warehouse" / "fitlake.duckdb"

    @property
    def docs_dir(self) -> Path:
        return self.data_root / "dbt_docs"

    def start(self) -> Pipeline:
        from ingestion.stack import stack_up
        from launchers.airflow_env import prepare_home
        from launchers.pipeline import in_env

        prepare_home(self.env)
        self.settings = in_env(self.env)
        stack_up(self.settings)
        return self

    def stop(self) -> None:
        from ingestion.stack import stack_down

        if self.settings is not None:
            stack_down(self.settings)

    def dags_test(self, dag_id: str, conf: dict | None = None):
        from launchers.pipeline import dags_test

        return dags_test(self.env, dag_id, conf, log_dir=self.logs)

    def metadata(self, sql: str, *args) -> list[tuple]:
        import sqlite3

        with sqlite3.connect(self.home / "airflow.db") as con:
            return con.execute(sql, args).fetchall()

    def task_states(self, dag_id: str) -> dict[str, str]:
        """Task states of the latest run of `dag_id`."""
        [(run_id,)] = self.metadata("select run_id from dag_run where dag_id = ? order by id desc limit 1", dag_id)
        return dict(
            self.metadata("select task_id, state from task_instance where dag_id = ? and run_id = ?", dag_id, run_id)
        )

    def query(self, sql: str) -> list[tuple]:
        import duckdb

        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, dbt_manifest):
    """One installation shared by the end-to-end, quality-gate and UI tests (they run in that order)."""
    installation = Pipeline(tmp_path_factory.mktemp("fitlake"), dbt_manifest).start()
    yield installation
    installation.stop()
