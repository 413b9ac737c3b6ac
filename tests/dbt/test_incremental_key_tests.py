"""The key tests that check only rows written since they last passed stay a real gate.

A duplicate written into heart_rate (as a faulty run would) fails the key test and skips
everything downstream; the next run without new data checks it again (the watermark only
advances when the test passes); a full refresh checks the whole table.
"""

from __future__ import annotations

import duckdb
from dbt_harness import Dbt
from golden_scenario import land_run1, land_run2

TEST = "unique_combination_since_last_pass_heart_rate_device_id___time_"


def _status(result, name: str) -> str:
    return {r.node.name: str(r.status) for r in result.result}[name]


def _watermarks(dbt: Dbt) -> dict:
    return dict(dbt.query("select relation, watermark from dbt_meta.test_watermarks"))


def test_failed_incremental_key_test_is_rechecked_until_fixed(dbt: Dbt) -> None:
    land_run1(dbt.writer)
    dbt.build()
    first = _watermarks(dbt)
    assert set(first) == {"bronze.kafka_multiplex_bz", "silver.heart_rate", "silver.workout_bpm"}

    # a duplicate (device_id, time) written "by this run": newer load_time than the watermark
    with duckdb.connect(str(dbt.warehouse)) as con:
        con.execute(
            "insert into silver.heart_rate select * replace (-1 as kafka_offset, timezone('UTC', now()) as load_time) "
            'from silver.heart_rate order by device_id, "time" limit 1'
        )
    land_run2(dbt.writer)
    result = dbt.build(expect_success=False)
    assert _status(result, TEST) == "fail"
    assert _status(result, "workout_bpm") == "skipped"
    assert _watermarks(dbt)["silver.heart_rate"] == first["silver.heart_rate"]

    # no new data: the failed rows are checked again and still stop the pipeline
    result = dbt.build(expect_success=False)
    assert _status(result, TEST) == "fail"
    assert _status(result, "workout_bpm") == "skipped"

    # the duplicate is removed: the test passes, the watermark advances, downstream runs
    with duckdb.connect(str(dbt.warehouse)) as con:
        con.execute("delete from silver.heart_rate where kafka_offset = -1")
    result = dbt.build(expect_success=False)
    assert _status(result, TEST) == "pass"
    assert _status(result, "workout_bpm") == "success"
    assert _watermarks(dbt)["silver.heart_rate"] > first["silver.heart_rate"]


def test_without_watermark_the_whole_table_is_checked(dbt: Dbt) -> None:
    land_run1(dbt.writer)
    dbt.build()
    # a duplicate with an old load_time (not written by a model run, so an incremental check
    # does not look at it: the documented trade-off)
    with duckdb.connect(str(dbt.warehouse)) as con:
        con.execute(
            "insert into silver.heart_rate select * replace (timestamp '2000-01-01' as load_time) "
            'from silver.heart_rate order by device_id, "time" limit 1'
        )
    assert _status(dbt.build(), TEST) == "pass"
    # without a watermark (as after a model is built from scratch: its pre-hook forgets it) the
    # test checks every row
    with duckdb.connect(str(dbt.warehouse)) as con:
        con.execute("delete from dbt_meta.test_watermarks where relation = 'silver.heart_rate'")
    result = dbt.invoke("test", "--select", TEST)
    assert _status(result, TEST) == "fail"
    # a full refresh rebuilds heart_rate from silver's inputs (one row per key) and passes
    result = dbt.build("--full-refresh")
    assert _status(result, TEST) == "pass"
    assert "silver.heart_rate" in _watermarks(dbt)
