"""Deployment settings for the DAGs, read once from environment variables (no I/O).

Every value has a default that works for the embedded stack from a checkout; docker-compose.yml and
the launchers set them explicitly. Paths handed to dbt are absolute, because Cosmos runs dbt in a
temporary copy of the project where the profile's relative defaults would point elsewhere.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from fitlake_common import REPO_ROOT

OWNER = os.environ.get("FITLAKE_DAG_OWNER", "fitlake-data")

# Every task that opens the DuckDB warehouse runs in this one-slot pool (see transform_dbt doc_md).
WAREHOUSE_POOL = "duckdb_warehouse"
WAREHOUSE_POOL_DESCRIPTION = "DuckDB allows one writing process per file: every task that opens the warehouse"

# Celery queues (ignored by the LocalExecutor): landing tasks go to workers that reach the sources and
# mount the landing zone; `dbt_build` to the worker(s) that run dbt (with DuckDB: the one host that has
# the warehouse file). docker-compose.yml starts a worker per queue.
LANDING_QUEUE = os.environ.get("FITLAKE_LANDING_QUEUE", "landing")
DBT_QUEUE = os.environ.get("FITLAKE_DBT_QUEUE", "dbt")


def _schedule(name: str, default: str) -> str | None:
    """A cron expression or preset; `none`/`off` disables the schedule (manual triggers only)."""
    value = os.environ.get(name, default).strip()
    return None if value.lower() in ("", "none", "off", "manual") else value


SQL_SCHEDULE = _schedule("FITLAKE_SQL_SCHEDULE", "@hourly")
KAFKA_SCHEDULE = _schedule("FITLAKE_KAFKA_SCHEDULE", "*/5 * * * *")

# The DAGs that land data; a transform waits (at most this long) while one of them runs, so one
# cycle of landings gives one build.
LANDING_DAG_IDS = ("land_azure_sql", "land_kafka")
TRANSFORM_COALESCE_SECONDS = float(os.environ.get("FITLAKE_TRANSFORM_COALESCE_SECONDS", "60"))

DATA_ROOT = Path(os.environ.get("FITLAKE_DATA_ROOT") or REPO_ROOT / "data").resolve()
LANDING_ROOT = Path(os.environ.get("FITLAKE_LANDING_ROOT") or DATA_ROOT / "landing").resolve()
WAREHOUSE = Path(os.environ.get("FITLAKE_WAREHOUSE") or DATA_ROOT / "warehouse" / "fitlake.duckdb").resolve()

DBT_PROJECT_DIR = Path(os.environ.get("FITLAKE_DBT_PROJECT_DIR") or REPO_ROOT / "dbt_project").resolve()
DBT_PROFILES_DIR = Path(os.environ.get("FITLAKE_DBT_PROFILES_DIR") or DBT_PROJECT_DIR).resolve()
DBT_MANIFEST = Path(os.environ.get("FITLAKE_DBT_MANIFEST") or DBT_PROJECT_DIR / "target" / "manifest.json").resolve()
DBT_TARGET = os.environ.get("FITLAKE_DBT_TARGET", "duckdb")
# The transform's dbt artefacts and its partial parse, kept between runs (outside the repository, so
# the manifest Cosmos renders from is never rewritten under a parsing DAG processor).
DBT_TARGET_DIR = Path(os.environ.get("FITLAKE_DBT_TARGET_DIR") or DATA_ROOT / "dbt" / "target").resolve()
# The running build's per-node status, one file per DAG run, read by the watchers without the API server.
DBT_STATUS_DIR = Path(os.environ.get("FITLAKE_DBT_STATUS_DIR") or DATA_ROOT / "dbt" / "status").resolve()
# Resources the transform's build leaves out (dbt selectors), e.g. checks that only the monitor runs.
DBT_BUILD_EXCLUDE = os.environ.get("FITLAKE_DBT_BUILD_EXCLUDE", "tag:health").split()
# `dbt docs generate` writes here (not into target/, so the manifest Cosmos renders from is never rewritten
# under a parsing DAG processor); the docs plugin serves this directory to logged-in users.
DBT_DOCS_DIR = Path(os.environ.get("FITLAKE_DBT_DOCS_DIR") or DATA_ROOT / "dbt_docs").resolve()


def _dbt_executable() -> str:
    """The dbt next to the running interpreter (the project venv), unless FITLAKE_DBT_EXECUTABLE says otherwise."""
    override = os.environ.get("FITLAKE_DBT_EXECUTABLE")
    if override:
        return override
    return str(Path(sys.executable).parent / "dbt")


DBT_EXECUTABLE = _dbt_executable()

ENGINES = ("duckdb", "spark")


def _dbt_engine(target: str) -> str:
    """The engine behind the dbt target: `spark*` targets run on Spark, the others (`duckdb`, `dev`) on DuckDB,
    unless FITLAKE_DBT_ENGINE names it (a target of another name added to the profile)."""
    engine = os.environ.get("FITLAKE_DBT_ENGINE") or ("spark" if target.startswith("spark") else "duckdb")
    if engine not in ENGINES:
        raise ValueError(f"FITLAKE_DBT_ENGINE={engine!r}: expected one of {', '.join(ENGINES)}")
    return engine


DBT_ENGINE = _dbt_engine(DBT_TARGET)
# How dbt reaches Spark: `session` starts Spark inside the dbt process (a JVM per process, a local
# Derby metastore that admits one JVM at a time); `thrift` sends SQL to a shared Spark Thrift server
# (FITLAKE_SPARK_HOST:FITLAKE_SPARK_PORT), which any number of dbt processes can use at once.
SPARK_METHOD = os.environ.get("FITLAKE_SPARK_METHOD", "session")
SPARK_CONNECTION = {
    name: os.environ[name]
    for name in ("FITLAKE_SPARK_METHOD", "FITLAKE_SPARK_HOST", "FITLAKE_SPARK_PORT")
    if name in os.environ
}
# Only one process at a time may open the warehouse: the DuckDB file, or a local Spark warehouse (its
# Derby metastore). Then `dbt_build` holds the one-slot pool. A Spark Thrift server admits many clients
# and Delta gives readers a consistent snapshot while a build writes: no pool.
ONE_PROCESS_WAREHOUSE = DBT_ENGINE == "duckdb" or SPARK_METHOD == "session"
DBT_BUILD_POOL = WAREHOUSE_POOL if ONE_PROCESS_WAREHOUSE else None

# Environment handed to every dbt invocation: the profile reads these (dbt_project/profiles.yml).
DBT_ENV = {
    "FITLAKE_WAREHOUSE": str(WAREHOUSE),
    "FITLAKE_LANDING_ROOT": str(LANDING_ROOT),
    "FITLAKE_DBT_TARGET": DBT_TARGET,
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    # dbt unit tests have fixed inputs, so their result cannot change with the data: they run in CI
    # (`make test`), not in every production transform (dbt's own recommendation). `dbt build` and
    # `dbt test` read this variable; set it to another resource type (e.g. `saved_query`) to run them.
    "DBT_EXCLUDE_RESOURCE_TYPES": os.environ.get("DBT_EXCLUDE_RESOURCE_TYPES", "unit_test"),
    # which Spark the build runs on is part of what it covered (the nothing-new check compares this)
    **(SPARK_CONNECTION if DBT_ENGINE == "spark" else {}),
}

# Landing tasks: transient failures (broker restart, SQL failover) are retried with exponential backoff.
LANDING_RETRIES = int(os.environ.get("FITLAKE_LANDING_RETRIES", "3"))
LANDING_RETRY_DELAY = timedelta(seconds=int(os.environ.get("FITLAKE_LANDING_RETRY_DELAY_SECONDS", "30")))
LANDING_MAX_RETRY_DELAY = timedelta(minutes=10)

# Landing tasks retry with exponential backoff (broker or database restarts); landing is exactly-once,
# so a retry never duplicates.
LANDING_DEFAULT_ARGS = {
    "owner": OWNER,
    "queue": LANDING_QUEUE,
    "retries": LANDING_RETRIES,
    "retry_delay": LANDING_RETRY_DELAY,
    "retry_exponential_backoff": True,
    "max_retry_delay": LANDING_MAX_RETRY_DELAY,
}
