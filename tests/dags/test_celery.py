"""Airflow on the CeleryExecutor, end to end on this machine, and the transform on a shared Spark.

A real Redis (Debian's redis-server) is the Celery broker; the api-server, scheduler, dag-processor and
triggerer run as separate processes, with two Celery workers: `landing-worker` serves the `landing`
queue, `dbt-worker` the `dbt` queue (tests/support/airflow_components.py). The recorded data set
tests/data/replay (its SQL rows' modification times recorded) goes through one cycle on it (both
landing DAGs, the transforms they schedule), and every silver and gold table must equal what the same
cycle gave on the LocalExecutor (`airflow standalone`): the shared installation's first cycle, on the
same recorded data (conftest.first_cycle, which test_end_to_end starts from).

Then the engine is switched the way an operator would: FITLAKE_DBT_TARGET=spark with
FITLAKE_SPARK_METHOD=thrift on the dag-processor and the dbt worker (both restarted), against a real
Spark Thrift server with Delta Lake (tests/support/spark_thrift.py, started in the background when the
module starts). A transform of one branch builds there, out of the `duckdb_warehouse` pool, on the
`dbt` worker, and its tables equal the DuckDB ones. Spark costs seconds per statement on this machine
(measured: a full build with its tests takes 3-10 min here), so this run selects one branch.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import ARTIFACTS, LINEAGE_COLUMNS, Installation, contract_tables

from tests.support.airflow_components import CeleryAirflow, Worker, celery_env
from tests.support.redis_server import throwaway_redis
from tests.support.spark_thrift import SparkThriftServer

LANDING_WORKER, DBT_WORKER = "landing-worker", "dbt-worker"
WORKERS = [
    Worker(LANDING_WORKER, ("landing", "default"), concurrency=3),
    Worker(DBT_WORKER, ("dbt",), concurrency=1),  # DuckDB: one writer, on the host with the warehouse file
]
SPARK_BRANCH = "gym_logs"  # what the Spark run selects: the merge of the latest logout, and its bronze


class CeleryInstallation(Installation):
    """The same installation, with Airflow as separate components on the CeleryExecutor."""

    def keep_logs(self) -> None:
        """Kept in their own artifacts folder, not over the shared installation's."""
        kept = ARTIFACTS / "airflow-logs-celery"
        shutil.rmtree(kept, ignore_errors=True)
        for folder in (self.home / "logs", self.root / "components"):
            if folder.is_dir():
                shutil.copytree(folder, kept / folder.name)

    def __init__(self, root: Path, manifest: Path, broker_url: str):
        super().__init__(root, manifest)
        self.env.update(celery_env(broker_url))

    def start(self) -> CeleryInstallation:
        from ingestion.stack import stack_up
        from launchers.airflow_api import AirflowApi
        from launchers.airflow_env import prepare_home
        from launchers.pipeline import in_env

        self.login = prepare_home(self.env)
        self.settings = in_env(self.env)
        stack_up(self.settings)
        try:
            self.airflow = CeleryAirflow(self.env, WORKERS, self.root / "components").start()
            self.api = AirflowApi(self.airflow.url)
            self.api.login(self.login.username, self.login.password)
            self.api.wait_for_dags("land_azure_sql", "land_kafka", "transform_dbt")
            self.api.unpause("land_azure_sql", "land_kafka", "transform_dbt")
        except BaseException:
            self.stop()  # the broker, the stand-in, whatever of Airflow started
            raise
        return self


class BackgroundSpark:
    """The Spark Thrift server, started (and its JVM warmed by one Delta write) while Airflow works."""

    def __init__(self, root: Path):
        self.server = SparkThriftServer(root / "warehouse", log_path=root / "spark-thrift.log")
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="spark-thrift", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
            self.server.query("create or replace table default.warm_up using delta as select 1 as one")
        except BaseException as error:  # surfaced by ready()
            self.error = error

    def ready(self, timeout: float = 600) -> SparkThriftServer:
        self.thread.join(timeout)
        if self.error is not None:
            raise RuntimeError(f"the Spark Thrift server did not start: {self.error}") from self.error
        assert not self.thread.is_alive(), f"the Spark Thrift server was not ready within {timeout:.0f}s"
        return self.server


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    background = BackgroundSpark(tmp_path_factory.mktemp("spark"))
    yield background
    background.thread.join(300)
    background.server.stop()


@pytest.fixture(scope="module")
def celery(tmp_path_factory, dbt_manifest, spark, first_cycle):
    # `spark` first: its JVM starts in the background while the LocalExecutor cycle runs
    with throwaway_redis() as broker_url:
        installation = CeleryInstallation(tmp_path_factory.mktemp("celery"), dbt_manifest, broker_url).start()
        try:
            yield installation
        finally:
            installation.stop()


@pytest.fixture(scope="module")
def celery_cycle(celery, replay_set):
    celery.replay(replay_set)
    cycle = celery.cycle()
    report_cycle("CeleryExecutor", cycle)
    return cycle


def report_cycle(executor: str, cycle) -> None:
    """Figures for the reader (`pytest -s`), never assertions."""
    from launchers.cycle import describe_run

    print(f"\n{executor}: cycle in {cycle.seconds:.1f}s")
    for run in [*cycle.landings, *cycle.transforms]:
        print(f"  {describe_run(run)}")


def as_of_date(installation, run_id: str) -> str:
    summary = installation.api.xcom("transform_dbt", run_id, "dbt_build", "return_value")
    return summary["plan"]["as_of_date"]


def task_instances(installation, dag_id: str, run_id: str) -> dict[str, dict]:
    """The task instances of a run as the REST API gives them (queue, pool, hostname, state...)."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000"
    return {ti["task_id"]: ti for ti in installation.api.json("GET", path)["task_instances"]}


def test_a_cycle_runs_on_the_celery_workers_of_its_queues(celery, celery_cycle):
    assert [r.state for r in celery_cycle.landings] == ["success", "success"]
    for run in celery_cycle.landings:
        for task_id, ti in task_instances(celery, run.dag_id, run.run_id).items():
            assert ti["state"] == "success", (task_id, ti["state"])
            assert (ti["queue"], ti["hostname"]) == ("landing", LANDING_WORKER), task_id
    built = [r for r in celery_cycle.transforms if r.built]
    assert len(built) == 1 and built[0].state == "success", [(r.run_id, r.state) for r in celery_cycle.transforms]
    tis = task_instances(celery, "transform_dbt", built[0].run_id)
    build = tis.pop("dbt_build")
    assert (build["queue"], build["hostname"], build["pool"]) == ("dbt", DBT_WORKER, "duckdb_warehouse")
    # the watchers never take a worker: they start and end in the triggerer
    assert tis and {ti["state"] for ti in tis.values()} <= {"success", "skipped"}
    assert not {ti["hostname"] for ti in tis.values()} & {LANDING_WORKER, DBT_WORKER}
    # what each worker executed, from its own log
    logs = {name: celery.airflow.components[name].output() for name in (LANDING_WORKER, DBT_WORKER)}
    assert "task_id='land_bpm'" in logs[LANDING_WORKER] and "task_id='dbt_build'" not in logs[LANDING_WORKER]
    assert "task_id='dbt_build'" in logs[DBT_WORKER] and "task_id='land_bpm'" not in logs[DBT_WORKER]


def test_every_silver_and_gold_table_equals_the_local_executor_run(celery, celery_cycle, first_cycle):
    built = next(r for r in celery_cycle.transforms if r.built)
    if as_of_date(celery, built.run_id) != first_cycle.as_of:  # the two cycles straddled midnight (UTC)
        run = celery.transform({"as_of_date": first_cycle.as_of})
        assert run["state"] == "success", run["task_states"]
    tables = contract_tables(celery)
    assert set(tables) == set(first_cycle.tables) and len(tables) >= 12, sorted(tables)
    assert tables["gold.workout_bpm_summary"], "gold is empty: the comparison would prove nothing"
    for table, rows in first_cycle.tables.items():
        assert tables[table] == rows, table


def wait_until(condition, timeout: float, what: str, poll: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s for {what}"
        time.sleep(poll)


def spark_rows(server: SparkThriftServer, table: str) -> list[tuple]:
    columns = [row[0] for row in server.query(f"describe {table}") if row[0] and not row[0].startswith("#")]
    kept = ", ".join(f"`{c}`" for c in dict.fromkeys(columns) if c not in LINEAGE_COLUMNS)
    return sorted(server.query(f"select {kept} from {table}"), key=repr)


def test_on_spark_the_build_runs_on_the_shared_thrift_server_without_the_pool(celery, celery_cycle, spark):
    server = spark.ready()
    duckdb_tables = contract_tables(celery)
    warehouse_mtime = celery.warehouse.stat().st_mtime_ns
    celery.airflow.restart(["dag-processor", DBT_WORKER], server.dbt_env())
    # the DAG processor re-serialises transform_dbt for the new engine: dbt_build leaves the pool
    wait_until(
        lambda: celery.api.json("GET", "/api/v2/dags/transform_dbt/tasks/dbt_build")["pool"] == "default_pool",
        timeout=240,
        what="the DAG processor to re-parse transform_dbt for the spark target",
    )
    run = celery.transform({"select": SPARK_BRANCH})
    summary = celery.api.xcom("transform_dbt", run["dag_run_id"], "dbt_build", "return_value") or {}
    print(f"\nspark ({SPARK_BRANCH}): dbt build {summary.get('seconds')}s, docs {summary.get('docs')}")
    states = run["task_states"]
    assert run["state"] == "success", states
    build = task_instances(celery, "transform_dbt", run["dag_run_id"])["dbt_build"]
    assert (build["queue"], build["hostname"], build["pool"]) == ("dbt", DBT_WORKER, "default_pool")
    assert states[f"dbt.{SPARK_BRANCH}.run"] == "success" and states[f"dbt.{SPARK_BRANCH}.test"] == "success"
    assert states["dbt.gym_logins_bz.run"] == "success"
    assert states["dbt.workout_bpm_summary.run"] == "skipped"
    assert celery.warehouse.stat().st_mtime_ns == warehouse_mtime, "the Spark build touched the DuckDB file"
    for table in ("silver.gym_logs", "bronze.gym_logins_bz"):
        expected = duckdb_tables.get(table) or sorted(
            celery.query(f"select * exclude (load_time, source_file) from {table}"), key=repr
        )
        assert spark_rows(server, table) == sorted(expected, key=repr), table
