"""The transform's engine comes from configuration: FITLAKE_DBT_TARGET (and how dbt reaches Spark).

Each case reads `fitlake_common.config` in a fresh interpreter with only that environment, as a
DAG processor or a worker would (the module reads the environment once, at import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json; from fitlake_common import config as c; print(json.dumps({'target': c.DBT_TARGET, "
    "'engine': c.DBT_ENGINE, 'pool': c.DBT_BUILD_POOL, 'dbt_queue': c.DBT_QUEUE, "
    "'landing_queue': c.LANDING_DEFAULT_ARGS['queue'], 'env': c.DBT_ENV}))"
)


def read_config(**variables: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FITLAKE_DBT_", "FITLAKE_SPARK_"))}
    env.update(variables, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "dags"), str(REPO_ROOT)]))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "variables,target,engine,pool",
    [
        ({}, "duckdb", "duckdb", "duckdb_warehouse"),  # the default
        ({"FITLAKE_DBT_TARGET": "dev"}, "dev", "duckdb", "duckdb_warehouse"),  # the former name
        # Spark inside the task: its Derby metastore admits one JVM at a time, so the pool stays
        ({"FITLAKE_DBT_TARGET": "spark"}, "spark", "spark", "duckdb_warehouse"),
        # a shared Spark Thrift server admits many clients: no pool
        ({"FITLAKE_DBT_TARGET": "spark", "FITLAKE_SPARK_METHOD": "thrift"}, "spark", "spark", None),
        (
            {"FITLAKE_DBT_TARGET": "prod", "FITLAKE_DBT_ENGINE": "spark", "FITLAKE_SPARK_METHOD": "thrift"},
            "prod",
            "spark",
            None,
        ),  # fmt: skip
    ],
)
def test_the_engine_and_the_pool_follow_the_target(variables, target, engine, pool):
    config = read_config(**variables)
    assert (config["target"], config["engine"], config["pool"]) == (target, engine, pool)
    assert config["env"]["FITLAKE_DBT_TARGET"] == target


def test_which_spark_the_build_ran_on_is_part_of_what_it_covered():
    """The nothing-new check compares DBT_ENV: another Thrift server means another warehouse."""
    spark = read_config(FITLAKE_DBT_TARGET="spark", FITLAKE_SPARK_METHOD="thrift", FITLAKE_SPARK_HOST="spark-a")
    assert spark["env"]["FITLAKE_SPARK_HOST"] == "spark-a" and spark["env"]["FITLAKE_SPARK_METHOD"] == "thrift"
    duckdb = read_config(FITLAKE_SPARK_HOST="spark-a")
    assert not [k for k in duckdb["env"] if k.startswith("FITLAKE_SPARK_")], "DuckDB builds do not depend on Spark"


def test_queues_default_to_landing_and_dbt_and_can_be_renamed():
    assert (read_config()["landing_queue"], read_config()["dbt_queue"]) == ("landing", "dbt")
    renamed = read_config(FITLAKE_LANDING_QUEUE="ingest-eu", FITLAKE_DBT_QUEUE="warehouse-host")
    assert (renamed["landing_queue"], renamed["dbt_queue"]) == ("ingest-eu", "warehouse-host")


def test_an_unknown_engine_is_refused_with_the_variable_named():
    env = {**os.environ, "FITLAKE_DBT_ENGINE": "snowflake", "PYTHONPATH": str(REPO_ROOT / "dags")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "FITLAKE_DBT_ENGINE='snowflake': expected one of duckdb, spark" in done.stderr
