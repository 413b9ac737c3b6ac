"""Fixtures for the DAG tests: a fresh dbt manifest, and one FitLake installation with a real Airflow
(scheduler, triggerer, DAG processor, API server: `airflow standalone`) on the embedded stack.

The end-to-end, quality-gate, kill and UI tests share the installation (they run in that order, file
by file); each drives it through the REST API as a user's tooling would.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
REPLAY = REPO_ROOT / "tests" / "data" / "replay"

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


class Installation:
    """An isolated FitLake installation: data root, Airflow home (SQLite), the embedded stack, Airflow."""

    def __init__(self, root: Path, manifest: Path, extra: dict[str, str] | None = None, logs: str = "airflow-logs"):
        from launchers.airflow_env import airflow_env, free_port

        self.root = root
        self.kept_logs = ARTIFACTS / logs  # each installation's own folder: the test workers run side by side
        self.data_root = root / "data"
        self.home = root / "airflow"
        self.env = airflow_env(
            self.home,
            data_root=self.data_root,
            port=free_port(),
            isolated_ports=True,
            extra={
                "FITLAKE_DBT_MANIFEST": str(manifest),
                "FITLAKE_SQL_SCHEDULE": "none",
                "FITLAKE_KAFKA_SCHEDULE": "none",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                # Airflow's default, not the launchers' 0.1 s (quicker hand-offs for a cycle): an idle scheduler
                # then costs ~3 s of CPU a minute instead of ~13 s, and `make test` runs up to three beside
                # Spark on two cores (measured with `make airflow` left idle)
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
                **(extra or {}),
            },
        )
        self.settings = None
        self.login = None
        self.airflow = None
        self.api = None

    @property
    def warehouse(self) -> Path:
        return self.data_root / "warehouse" / "fitlake.duckdb"

    @property
    def docs_dir(self) -> Path:
        return self.data_root / "dbt_docs"

    def start(self) -> Installation:
        from ingestion.stack import stack_up
        from launchers.airflow_api import AirflowApi
        from launchers.airflow_env import prepare_home
        from launchers.pipeline import in_env
        from launchers.standalone import Standalone

        self.login = prepare_home(self.env)
        self.settings = in_env(self.env)
        stack_up(self.settings)
        self.airflow = Standalone(self.env, log_path=self.root / "standalone.log").start(timeout=300)
        self.api = AirflowApi(self.airflow.url)
        self.api.login(self.login.username, self.login.password)
        self.api.wait_for_dags("land_azure_sql", "land_kafka", "transform_dbt")
        self.api.unpause("land_azure_sql", "land_kafka", "transform_dbt")
        return self

    def stop(self) -> None:
        from ingestion.stack import stack_down

        if self.airflow is not None:
            self.airflow.stop()
        if self.settings is not None:
            stack_down(self.settings)
        self.keep_logs()

    def keep_logs(self) -> None:
        """Airflow's logs (components and tasks) outlive the temporary installation, for a failed run's reader."""
        kept = self.kept_logs
        shutil.rmtree(kept, ignore_errors=True)
        if (self.home / "logs").is_dir():
            shutil.copytree(self.home / "logs", kept)
        if (self.root / "standalone.log").is_file():
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.root / "standalone.log", kept / "standalone.log")

    def replay(self, *paths: Path) -> None:
        from ingestion.replay import replay

        replay(self.settings, list(paths))

    def cycle(self):
        """Both landing DAGs at once, and the transforms they schedule (launchers.cycle)."""
        from launchers.cycle import run_cycle

        return run_cycle(self.api, timeout=600)

    def transform(self, conf: dict | None = None) -> dict:
        """A manual transform_dbt run with `conf`; waits for it and returns the run with its task states."""
        self.api.wait_until_idle("transform_dbt", settle=0.5)
        run_id = self.api.trigger("transform_dbt", conf)
        run = self.api.wait_for_run("transform_dbt", run_id, timeout=600)
        run["task_states"] = self.api.task_states("transform_dbt", run_id)
        return run

    def query(self, sql: str) -> list[tuple]:
        """Read the warehouse (only while no transform runs: DuckDB admits one process at a time)."""
        import duckdb

        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()

    def task_log_files(self, dag_id: str | None = None) -> list[Path]:
        logs = self.home / "logs"
        pattern = f"dag_id={dag_id}/**/*.log" if dag_id else "dag_id=*/**/*.log"
        return sorted(logs.glob(pattern))


@pytest.fixture(scope="session")
def installation(tmp_path_factory, dbt_manifest):
    """One installation for the Airflow tests of the session (its Airflow starts once: ~30-60 s)."""
    inst = Installation(tmp_path_factory.mktemp("fitlake"), dbt_manifest).start()
    yield inst
    inst.stop()


@pytest.fixture(scope="session")
def new_installation(tmp_path_factory, dbt_manifest):
    """Another installation (its own data, Airflow and settings), for tests whose data or configuration must
    differ from `installation`'s: `new_installation("name", extra_env)`; the caller starts and stops it."""
    return lambda name, extra=None: Installation(
        tmp_path_factory.mktemp(name), dbt_manifest, extra=extra, logs=f"airflow-logs-{name}"
    )


@pytest.fixture(scope="session")
def replay_set(tmp_path_factory) -> Path:
    """tests/data/replay with every SQL row's `modified_at` recorded (increasing, in file order).

    Without it replay stamps each row when it writes it (the source application's clock), and the two
    installations' sources would differ in that column; with it both hold exactly the same rows.
    """
    folder = tmp_path_factory.mktemp("replay")
    shutil.copy(REPLAY / "kafka.jsonl", folder / "kafka.jsonl")
    stamp = 1700100000
    for csv_file in sorted(REPLAY.glob("*.csv")):
        with open(csv_file, newline="") as source:
            rows = list(csv.DictReader(source))
        with open(folder / csv_file.name, "w", newline="") as target:
            writer = csv.DictWriter(target, fieldnames=[*(k for k in rows[0] if k != "modified_at"), "modified_at"])
            writer.writeheader()
            for row in rows:
                stamp += 1
                writer.writerow({**row, "modified_at": row.get("modified_at") or stamp})
    return folder


LINEAGE_COLUMNS = {"load_time", "source_file"}  # when a row was loaded: differs after any rebuild


def contract_tables(installation) -> dict[str, list[tuple]]:
    """Every silver and gold table, all columns but lineage, sorted."""
    tables = installation.query(
        "select table_schema, table_name, list(column_name order by ordinal_position) from information_schema.columns "
        "where table_schema in ('silver', 'gold') group by all order by all"
    )
    snapshot = {}
    for schema, table, columns in tables:
        kept = ", ".join(f'"{c}"' for c in columns if c not in LINEAGE_COLUMNS)
        snapshot[f"{schema}.{table}"] = installation.query(f"select {kept} from {schema}.{table} order by all")
    return snapshot


class FirstCycle(NamedTuple):
    cycle: object  # launchers.cycle.Cycle
    tables: dict[str, list[tuple]]  # silver and gold right after it
    as_of: str  # the as-of date its build used


@pytest.fixture(scope="session")
def first_cycle(installation, replay_set) -> FirstCycle:
    """The shared installation's first cycle (LocalExecutor) on the recorded data, and what it built.

    test_end_to_end starts from it; test_celery compares the same cycle on the CeleryExecutor with it. The
    tables are read right away, before any test changes the installation.
    """
    installation.replay(replay_set)
    cycle = installation.cycle()
    built = next((r for r in cycle.transforms if r.built), None)
    assert built is not None and built.state == "success", "the first cycle built nothing"
    summary = installation.api.xcom("transform_dbt", built.run_id, "dbt_build", "return_value")
    return FirstCycle(cycle, contract_tables(installation), summary["plan"]["as_of_date"])
