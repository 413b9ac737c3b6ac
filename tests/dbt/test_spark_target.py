"""The same dbt project on the `spark` target (Spark + Delta Lake, dbt-spark) as on DuckDB.

The golden scenario and a seeded incremental-equals-full-refresh split run on Spark; after every
build each silver and gold table on Spark equals the DuckDB build of the same landing files, row
for row (doubles within a relative 1e-9), and the golden rows are the hand-computed ones. Spark
runs in this process (dbt-spark method session), one JVM for the whole test session.

Spark builds cost seconds per node, so intermediate runs are `dbt run` (the models and hooks)
and the last build of each scenario is a `dbt build` (models, data tests, unit tests).
"""

from __future__ import annotations

from dbt_harness import CONTRACT_COLUMNS, Dbt, SparkDbt, assert_same_rows
from golden_scenario import land_run1, land_run2, land_run3
from random_landing import generate, write
from test_golden import assert_expected


def assert_engines_agree(spark: SparkDbt, duckdb: Dbt, when: str) -> None:
    for table in CONTRACT_COLUMNS:
        assert_same_rows(spark.rows(table), duckdb.rows(table), f"{table} on spark vs duckdb, {when}")


def test_golden_scenario_on_spark_equals_duckdb(dbt: Dbt, spark_dbt: SparkDbt) -> None:
    for run, land in enumerate([land_run1, land_run2, land_run3], start=1):
        land(dbt.writer)
        dbt.build()
        if run < 3:
            spark_dbt.invoke("run")
        else:
            spark_dbt.build()
        assert_engines_agree(spark_dbt, dbt, f"after incremental run {run}")
    assert_expected(spark_dbt)
    assert spark_dbt.query("select count(*) from dbt_meta.test_watermarks")[0][0] == 3

    # a rerun without new files changes nothing
    before = spark_dbt.snapshot(all_columns=True)
    spark_dbt.invoke("run")
    assert spark_dbt.snapshot(all_columns=True) == before

    # the same files in one full refresh
    spark_dbt.build("--full-refresh", "--exclude-resource-type", "unit_test")
    assert_expected(spark_dbt)
    assert_engines_agree(spark_dbt, dbt, "after a full refresh")


def test_incremental_runs_equal_full_refresh_on_spark(dbt: Dbt, spark_dbt: SparkDbt) -> None:
    # a smaller split than the DuckDB test's (Spark builds are slow): seed 7 in 2 runs
    seed, n_batches = 7, 2
    dataset = generate(seed)
    write(dataset, dbt.writer, 1, seed)[0]()
    dbt.build("--full-refresh")
    spark_dbt.invoke("run", "--full-refresh")
    expected = spark_dbt.snapshot()
    assert len(expected["silver.workout_bpm"]) > 20
    assert len(expected["silver.quarantine"]) >= 6
    assert_engines_agree(spark_dbt, dbt, "after a full refresh")

    dbt.reset()
    spark_dbt.reset()
    for batch, land in enumerate(write(dataset, dbt.writer, n_batches, seed), start=1):
        land()
        dbt.build()
        if batch < n_batches:
            spark_dbt.invoke("run")
        else:
            spark_dbt.build("--exclude-resource-type", "unit_test")
    actual = spark_dbt.snapshot()
    for table in CONTRACT_COLUMNS:
        assert_same_rows(actual[table], expected[table], f"{table} on spark after {n_batches} incremental runs")
    assert_engines_agree(spark_dbt, dbt, f"after {n_batches} incremental runs")
