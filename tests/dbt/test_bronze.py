"""Bronze: loaded once, lineage kept, Kafka messages unique on (topic, partition, offset)."""

from __future__ import annotations

from dbt_harness import Dbt


def _bpm(i: int) -> dict:
    return {"device_id": 1, "time": 1_700_000_000 + i, "heartrate": 60 + i}


def test_kafka_overlapping_files_load_each_message_once(dbt: Dbt) -> None:
    w = dbt.writer
    # run 1: offsets 0-5, plus an overlapping file 3-8 in the same run (a crashed and redone
    # micro-batch): every message once
    w.kafka_file("bpm", [_bpm(i) for i in range(6)], offsets=list(range(0, 6)))
    w.kafka_file("bpm", [_bpm(i) for i in range(3, 9)], offsets=list(range(3, 9)))
    dbt.build("--select", "+kafka_multiplex_bz", "--indirect-selection", "cautious")
    assert dbt.query('select "offset" from bronze.kafka_multiplex_bz order by 1') == [(i,) for i in range(9)]
    # the kept copy of a repeated offset is the one from the first file (by path)
    files = dbt.query('select count(distinct source_file) from bronze.kafka_multiplex_bz where "offset" < 6')
    assert files == [(1,)]

    # run 2: a file overlapping what is already loaded (7-11) plus a clean one (12-13)
    w.kafka_file("bpm", [_bpm(i) for i in range(7, 12)], offsets=list(range(7, 12)))
    w.kafka_file("bpm", [_bpm(i) for i in range(12, 14)], offsets=list(range(12, 14)))
    dbt.build("--select", "+kafka_multiplex_bz", "--indirect-selection", "cautious")
    rows = dbt.query('select "offset", value, week_part, date from bronze.kafka_multiplex_bz order by 1')
    assert [r[0] for r in rows] == list(range(14))
    assert {(r[2], str(r[3])) for r in rows} == {("2023-46", "2023-11-14")}
    load_times = dbt.query("select count(distinct load_time) from bronze.kafka_multiplex_bz")
    assert load_times == [(2,)]

    # run 3: nothing new: nothing added
    dbt.build("--select", "+kafka_multiplex_bz", "--indirect-selection", "cautious")
    assert dbt.query("select count(*), count(distinct load_time) from bronze.kafka_multiplex_bz") == [(14, 2)]


def test_sql_extract_rerun_adds_nothing_and_keeps_lineage(dbt: Dbt) -> None:
    path = dbt.writer.sql_batch(
        "registered_users",
        [
            dict(
                user_id=1,
                device_id=2,
                mac_address="m",
                registration_timestamp=1_700_000_000.123456,
                modified_at=1_700_000_000,
            ),
        ],
    )
    dbt.build("--select", "registered_users_bz", "--indirect-selection", "cautious")
    dbt.build("--select", "registered_users_bz", "--indirect-selection", "cautious")
    rows = dbt.query("select user_id, registration_timestamp, source_file from bronze.registered_users_bz")
    assert len(rows) == 1
    assert rows[0][1].microsecond == 123456
    assert rows[0][2] == str(path)


def test_quarantine_keeps_rejects_of_a_parent_that_ran_later(dbt) -> None:
    """quarantine marks each topic's progress separately: a run that built it after bpm_events but
    before user_info_events (a partial selection) must not make it skip user_info's rejects."""
    dbt.writer.kafka_file("user_info", ["garbage-ui-1"])
    dbt.writer.kafka_file("bpm", ["garbage-bpm-1"])
    dbt.build()
    dbt.writer.kafka_file("user_info", ["garbage-ui-2"])
    dbt.writer.kafka_file("bpm", ["garbage-bpm-2"])
    dbt.build("--select", "kafka_multiplex_bz", "bpm_events", "quarantine")
    dbt.build()
    dbt.build()  # and a rerun adds nothing
    rows = dbt.query("select raw_record, reason from silver.quarantine where topic is not null order by raw_record")
    assert rows == [
        ("garbage-bpm-1", "malformed json"),
        ("garbage-bpm-2", "malformed json"),
        ("garbage-ui-1", "malformed json"),
        ("garbage-ui-2", "malformed json"),
    ]


def test_a_dob_not_written_mm_dd_yyyy_is_quarantined(dbt) -> None:
    """strptime alone would read 01/05/90 as the year 90 and bin the member 95+."""
    from golden_scenario import profile

    good = profile(20011, "new", 1700000000, city="A", dob="01/05/1990")
    short_year = profile(20012, "new", 1700000000, city="B", dob="01/05/90")
    one_digit = profile(20013, "new", 1700000000, city="C", dob="1/5/1990")
    dbt.writer.kafka_file("user_info", [good, short_year, one_digit])
    dbt.build()
    assert dbt.query("select user_id from silver.user_profile") == [(20011,)]
    assert dbt.query("select reason from silver.quarantine where topic = 'user_info'") == [("bad dob",), ("bad dob",)]


def test_a_zip_or_heartrate_that_is_not_a_number_is_quarantined_not_dropped(dbt) -> None:
    from golden_scenario import profile

    zip_plus_four = profile(20021, "new", 1700000000, city="A", dob="01/05/1990")
    zip_plus_four["address"]["zip"] = "62701-1234"
    dbt.writer.kafka_file("user_info", [zip_plus_four])
    dbt.writer.kafka_file("bpm", [{"device_id": 7, "time": 1700000000, "heartrate": "NaN"}])
    dbt.build()
    assert dbt.query("select count(*) from silver.user_profile") == [(0,)]
    assert dbt.query("select count(*) from silver.heart_rate") == [(0,)]
    assert dbt.query("select topic, reason from silver.quarantine order by topic") == [
        ("bpm", "invalid heartrate"),
        ("user_info", "invalid zip"),
    ]
