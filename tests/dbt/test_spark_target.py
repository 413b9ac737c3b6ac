"""The same dbt project on the `spark` target (Spark + Delta Lake, dbt-spark) as on DuckDB.

The golden scenario (three incremental runs) and a seeded split, whose incremental runs equal one full
build of the same files and whose last run brings values no cast can read, run on Spark. After
every build each silver and gold table on Spark equals the DuckDB build of the same landing files, row
for row (doubles within a relative 1e-9), and the golden rows are the hand-computed ones. Spark runs in
this process (dbt-spark method session), one JVM for the whole test session.

Spark with ANSI mode off (dbt-spark's setting) turns a bad cast into null instead of an error:
a batch of such records must be quarantined with the same reasons as on DuckDB.

Spark builds cost seconds per node, so most runs are `dbt run` (models and hooks); one `dbt build`, the
golden scenario's third run, runs the data tests and the unit tests on Spark.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from dbt_harness import CONTRACT_COLUMNS, Dbt, SparkDbt, assert_same_rows
from golden_scenario import land_run1, land_run2, land_run3, profile, workout
from random_landing import generate, write
from test_golden import assert_expected


def assert_engines_agree(spark: SparkDbt, duckdb: Dbt, when: str) -> None:
    for table in CONTRACT_COLUMNS:
        assert_same_rows(spark.rows(table), duckdb.rows(table), f"{table} on spark vs duckdb, {when}")


@pytest.mark.slow
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

    # (incremental runs equal one full build of the same files: the next test, on a seeded split, which also
    # lands the values no cast can read. A rerun without new files is not run on Spark on its own: run 3 lands
    # no SQL file, and every table it builds must still equal DuckDB's, where that rerun is tested.)


def land_values_no_cast_can_read(writer) -> dict[str, int]:
    """Records whose values Spark (ANSI mode off) casts to null instead of failing; each topic's first offset."""
    bad_zip = profile(20031, "new", 1700000000, city="A", dob="01/05/1990")
    bad_zip["address"]["zip"] = "62701-1234"
    batch = {
        "user_info": [
            bad_zip,
            profile(20032, "new", 1700000000, city="B", dob="01/05/90"),
            profile(20033, "new", "soon", city="C", dob="01/05/1990"),
            profile("20x", "new", 1700000000, city="D", dob="01/05/1990"),
            "[1, 2]",
            None,
        ],
        "bpm": [
            {"device_id": 7, "time": 1700000000, "heartrate": "NaN"},
            {"device_id": 7, "time": 1700000001, "heartrate": "fast"},
            {"device_id": 7, "time": 1e12, "heartrate": 60},
            {"device_id": "seven", "time": 1700000002, "heartrate": 60},
        ],
        "workout": [workout(20001, 1.5, 100, "start", 1700000000)],
    }
    files = {topic: writer.kafka_file(topic, messages) for topic, messages in batch.items()}
    return {topic: pq.read_table(path, columns=["offset"])["offset"][0].as_py() for topic, path in files.items()}


@pytest.mark.slow
def test_incremental_runs_equal_full_refresh_on_spark(dbt: Dbt, spark_dbt: SparkDbt) -> None:
    # a smaller split than the DuckDB test's (Spark builds are slow): seed 7 in 2 runs
    seed, n_batches = 7, 2
    dataset = generate(seed)
    # the reference: one full build of all the files. On DuckDB: Spark's first run of any test takes the same
    # path as its full refresh (no table yet), and DuckDB's own split tests equal its full build.
    write(dataset, dbt.writer, 1, seed)[0]()
    land_values_no_cast_can_read(dbt.writer)
    dbt.build("--full-refresh")
    expected = {table: dbt.rows(table) for table in CONTRACT_COLUMNS}
    assert len(expected["silver.workout_bpm"]) > 20
    assert len(expected["silver.quarantine"]) >= 6

    dbt.reset()
    spark_dbt.reset()
    for batch, land in enumerate(write(dataset, dbt.writer, n_batches, seed), start=1):
        land()
        if batch == n_batches:
            first_offsets = land_values_no_cast_can_read(dbt.writer)
        dbt.build()
        spark_dbt.invoke("run")  # the data tests ran on Spark in the golden scenario
    for table in CONTRACT_COLUMNS:
        assert_same_rows(spark_dbt.rows(table), expected[table], f"{table} on spark after {n_batches} incremental runs")
    assert_engines_agree(spark_dbt, dbt, f"after {n_batches} incremental runs")

    # the values no cast can read: null on Spark, never an error, and quarantined as on DuckDB
    reasons = [
        reason
        for topic, first in first_offsets.items()
        for (reason,) in spark_dbt.query(
            f"select reason from silver.quarantine where topic = '{topic}' and kafka_partition = 0 "
            f"and kafka_offset >= {first}"
        )
    ]
    assert sorted(reasons) == sorted(
        [
            "invalid zip",
            "bad dob",
            "invalid timestamp",
            "invalid user_id",
            "payload is not a json object",
            "null value",
            "invalid heartrate",
            "invalid heartrate",
            "invalid time",
            "invalid device_id",
            "invalid workout_id",
        ]
    )
