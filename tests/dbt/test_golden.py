"""Golden scenario: three runs of hand-made landing data with hand-computed expected rows.

Covers out-of-order CDC, delete then re-create, redelivered messages, a workout stop arriving a
run after its start, a reading arriving after its workout completed, a logout set by a later
extract, readings exactly on the start (excluded) and end (included) boundaries, malformed JSON
and missing fields going to quarantine, a user without a profile, and sub-second float epochs.
The same data loaded in one full refresh must give the same rows, and a rerun without new files
must change nothing.
"""

from __future__ import annotations

import json

from dbt_harness import CONTRACT_COLUMNS, Dbt, _sort_key, approx
from golden_scenario import (
    BAD_BPM,
    BAD_DOB,
    BAD_WORKOUT_JSON,
    EXPECTED,
    EXPECTED_QUARANTINE,
    MAC1,
    MISSING_SESSION,
    T,
    land_run1,
    land_run2,
    land_run3,
    profile,
)


def assert_expected(dbt: Dbt) -> None:
    for table, expected in EXPECTED.items():
        assert dbt.rows(table) == approx(sorted(expected, key=_sort_key)), table
    quarantine = sorted(dbt.query("select source_table, topic, reason from silver.quarantine"), key=str)
    assert quarantine == EXPECTED_QUARANTINE
    raw = set(
        r[0] for r in dbt.query("select raw_record from silver.quarantine where source_table = 'kafka_multiplex_bz'")
    )
    assert {BAD_WORKOUT_JSON, BAD_BPM, json.dumps(MISSING_SESSION), json.dumps(BAD_DOB)} <= raw


def test_empty_landing_zone_builds_empty_tables(dbt: Dbt) -> None:
    dbt.build()
    for table in CONTRACT_COLUMNS:
        assert dbt.rows(table) == [], table
    assert dbt.query("select count(*) from bronze.kafka_multiplex_bz") == [(0,)]


def test_golden_incremental_runs_then_idempotent_rerun(dbt: Dbt) -> None:
    w = dbt.writer
    land_run1(w)
    dbt.build()
    # after run 1: the workout of user 20001 has no stop yet, user 20002 exists
    assert dbt.rows("silver.completed_workouts") == [(20002, 2, 200, T(1700070100.5), T(1700070700))]
    assert [r[0] for r in dbt.rows("silver.user_profile")] == [20001, 20002, 20005]
    assert dbt.rows("silver.gym_logs")[0] == (MAC1, 2, T(1700050000), None)

    land_run2(w)
    dbt.build()
    # after run 2: user 20002 deleted, the workout of 20001 completed with the readings so far
    assert [r[0] for r in dbt.rows("silver.user_profile")] == [20001, 20005]
    assert [r[6] for r in dbt.rows("silver.workout_bpm") if r[0] == 20001] == [100.0, 110.0]

    land_run3(w)
    dbt.build()
    assert_expected(dbt)

    before = dbt.snapshot(all_columns=True)
    bronze_before = dbt.query("select count(*) from bronze.kafka_multiplex_bz")
    dbt.build()
    assert dbt.snapshot(all_columns=True) == approx(before)
    assert dbt.query("select count(*) from bronze.kafka_multiplex_bz") == bronze_before


def test_golden_full_refresh_gives_the_same_rows(dbt: Dbt) -> None:
    w = dbt.writer
    land_run1(w)
    land_run2(w)
    land_run3(w)
    dbt.build("--full-refresh")
    assert_expected(dbt)


def test_as_of_date_drives_ages(dbt: Dbt) -> None:
    """Whole years at the as-of date: the same data and as-of date give the same bins."""
    dbt.writer.kafka_file("user_info", [profile(20001, "new", 1700000000, city="S", dob="12/31/1990")])
    dbt.build()
    cases = [
        ("2008-12-30", "under 18"),
        ("2008-12-31", "18-25"),
        ("2015-12-30", "18-25"),
        ("2015-12-31", "25-35"),
        ("2086-01-01", "95+"),
        ("1990-12-30", "invalid age"),
    ]
    for as_of, label in cases:
        dbt.invoke("run", "--select", "user_bins", as_of_date=as_of)
        assert dbt.rows("silver.user_bins", ["user_id", "age"]) == [(20001, label)], as_of
