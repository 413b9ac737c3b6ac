"""Simulate and replay into real sources, land them, and check the landing zone holds exactly that."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingestion import azure_sql
from ingestion.errors import FitLakeError, SourceUnreachable
from ingestion.land_kafka import land_kafka_topic
from ingestion.land_sql import land_sql_tables
from ingestion.replay import ReplayError, replay
from ingestion.simulate import SimulationRates, default_start, generate, simulate
from ingestion.source_tables import SOURCE_TABLES
from tests.support.landing import kafka_rows, sql_rows

EPOCH = datetime(1970, 1, 1)
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "replay"
START = datetime(2024, 3, 1, tzinfo=UTC)
RATES = SimulationRates(
    workout_minutes=(3.0, 6.0), redelivered=0.03, out_of_order=0.03, late=0.02, malformed=0.02, open_visit=0.2
)


def _unique_topics(settings):
    """Topics of this test only: the brokers live for the whole session."""
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(settings, kafka_topics=tuple(f"{t}_{suffix}" for t in settings.kafka_topics))


@pytest.fixture
def settings(make_settings, kafka_bootstrap):
    return _unique_topics(make_settings(FITLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap))


def _land_everything(settings, runs: int = 4) -> dict[str, int]:
    """Rows landed per entity. A Kafka batch is bounded by the ends its probe saw, and a probe that runs out of
    time on a loaded machine sees less, so each topic is landed until a run lands nothing more. (The failures
    this was first added for were the test broker's retention deleting 2024-stamped records, since turned off.)"""
    landed = {s.entity: s.rows for s in land_sql_tables(settings)}
    for topic in settings.kafka_topics:
        landed[topic] = 0
        for _ in range(runs):
            rows = land_kafka_topic(settings, topic).rows
            landed[topic] += rows
            if not rows and landed[topic]:
                break
    return landed


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def test_simulate_lands_exactly_what_it_reports(settings):
    ticks = []
    written_from = _now()
    summary = simulate(settings, members=6, gyms=2, days=1, seed=21, start=START, rates=RATES, progress=ticks.append)
    user_info, workout, bpm = settings.kafka_topics
    assert summary.messages[bpm] > 1000 and summary.messages[workout] > 0 and summary.messages[user_info] >= 6
    assert sum(ticks) == sum(summary.rows.values()) + summary.logout_updates + sum(summary.messages.values())

    written_until = _now()
    landed = _land_everything(settings)
    assert landed == {**summary.rows, **summary.messages}

    # Exactly the rows and messages of the pure layer, to the microsecond.
    expected = generate(members=6, gyms=2, days=1, seed=21, start=START, rates=RATES)
    assert summary.redelivered == expected.stats.redelivered and summary.late == expected.stats.late
    assert summary.malformed == dict(expected.stats.malformed)
    for table, rows in expected.sql_rows().items():
        got = sql_rows(settings.landing_root, table)
        columns = list(got[0])[:4]  # the business columns; modified_at is the time of the write
        assert sorted(tuple(r[c] for c in columns) for r in got) == sorted(rows, key=_sortable)
        stamps = [r["modified_at"] for r in got]
        assert len(set(stamps)) == len(stamps) and all(written_from <= t <= written_until for t in stamps)
    names = dict(zip(("user_info", "workout", "bpm"), settings.kafka_topics, strict=True))
    for contract_topic, topic in names.items():
        got = Counter((r["key"], r["value"], r["timestamp"]) for r in kafka_rows(settings.landing_root, topic))
        want = Counter(
            (m.key, m.value, EPOCH + timedelta(milliseconds=m.timestamp_us // 1000))
            for m in expected.messages
            if m.topic == contract_topic
        )
        assert got == want, contract_topic


def _sortable(row):
    return tuple((value is None, value) for value in row)


def test_replay_sample_lands_the_recorded_rows(settings, caplog):
    written_from = _now()
    with caplog.at_level(logging.INFO):
        summary = replay(settings, [SAMPLE])
    written_until = _now()
    # replay's summary under its own logger; the producer's line beside the other Kafka clients
    loggers = {r.getMessage(): r.name for r in caplog.records}
    assert loggers[f"replayed 3 file(s) in {summary.seconds:.1f}s"] == "ingestion.replay"
    assert loggers["sql:registered_users: 3 rows read, 3 inserted, 0 updated, 0 already present"] == "ingestion.replay"
    assert loggers[next(m for m in loggers if m.startswith("produced 11 messages"))] == "ingestion.kafka"
    assert "ingestion.simulate" not in loggers.values()
    user_info, workout, bpm = settings.kafka_topics
    assert summary.rows == {"gym_logins": 4, "registered_users": 3}
    assert summary.inserted == {"registered_users": 3, "gym_logins": 3}
    assert summary.messages == {user_info: 3, workout: 3, bpm: 5}

    again = replay(settings, [SAMPLE / "gym_logins.csv", SAMPLE / "registered_users.csv"])
    assert again.inserted == {"registered_users": 0, "gym_logins": 0}
    assert again.unchanged == {"registered_users": 3, "gym_logins": 4}

    landed = _land_everything(settings)
    assert landed == {"registered_users": 3, "gym_logins": 3, user_info: 3, workout: 3, bpm: 5}
    visits = {r["mac_address"]: r for r in sql_rows(settings.landing_root, "gym_logins")}
    assert visits["0a:1b:2c:3d:4e:5f"]["logout"] == datetime(2023, 11, 15, 13, 21, 40, 500000)
    # no modified_at in the CSV: stamped when replay wrote the row; a recorded one is kept
    assert written_from <= visits["0a:1b:2c:3d:4e:5f"]["modified_at"] <= written_until
    assert visits["0a:1b:2c:3d:4e:60"]["logout"] == datetime(2023, 11, 15, 13, 21, 40, 123456)
    assert visits["0a:1b:2c:3d:4e:60"]["modified_at"] == datetime(2023, 11, 15, 13, 21, 40, 123456)
    assert visits["0a:1b:2c:3d:4e:61"]["logout"] is None
    users = {r["user_id"]: r for r in sql_rows(settings.landing_root, "registered_users")}
    assert users[20003]["registration_timestamp"] == datetime(2023, 11, 14, 22, 20, 0, 1)

    stops = [r for r in kafka_rows(settings.landing_root, workout) if '"stop"' in r["value"]]
    assert len(stops) == 2 and {r["timestamp"] for r in stops} == {datetime(2023, 11, 15, 12, 41, 40, 250000)}
    readings = kafka_rows(settings.landing_root, bpm)
    assert {r["key"] for r in readings} == {"300017"}
    assert any(r["value"].endswith('"heartrate": ') for r in readings)  # malformed values go through as-is
    profiles = sorted(kafka_rows(settings.landing_root, user_info), key=lambda r: r["timestamp"])
    assert [r["timestamp"] for r in profiles] == [
        datetime(2023, 11, 14, 22, 13, 25),
        datetime(2023, 11, 14, 22, 15, 5, 500000),
        datetime(2023, 11, 15, 14, 53, 20),
    ]


def test_a_contradicting_replay_fails_before_writing(make_settings, tmp_path):
    settings = make_settings()  # SQL only: no broker needed
    replay(settings, [SAMPLE / "registered_users.csv"])
    changed = tmp_path / "registered_users.csv"
    changed.write_text("user_id,device_id,mac_address,registration_timestamp\n20009,1,aa,1\n20001,9,bb,1700000000\n")
    with pytest.raises(ReplayError, match=r"registered_users.csv:3: registered_users key \{'user_id': 20001\}"):
        replay(settings, [changed])
    assert {r["user_id"] for r in _landed_users(settings)} == {20001, 20002, 20003}


def _landed_users(settings):
    land_sql_tables(settings, ["registered_users"])
    return sql_rows(settings.landing_root, "registered_users")


def test_replay_into_postgresql(make_settings, postgres_odbc):
    schema = f"replay_{uuid.uuid4().hex[:8]}"
    settings = make_settings(FITLAKE_SOURCE_ODBC=postgres_odbc, FITLAKE_SOURCE_SCHEMA=schema)
    summary = replay(settings, [SAMPLE / "registered_users.csv", SAMPLE / "gym_logins.csv"])
    assert summary.inserted == {"registered_users": 3, "gym_logins": 3}
    again = replay(settings, [SAMPLE / "gym_logins.csv"])
    assert again.unchanged == {"gym_logins": 4}
    landed = {s.entity: s.rows for s in land_sql_tables(settings)}
    assert landed == {"registered_users": 3, "gym_logins": 3}
    visits = sorted(sql_rows(settings.landing_root, "gym_logins"), key=lambda r: r["login"])
    assert [(v["login"], v["logout"]) for v in visits] == [
        (datetime(2023, 11, 15, 12, 6, 40), datetime(2023, 11, 15, 13, 21, 40, 500000)),
        (datetime(2023, 11, 15, 12, 23, 20, 750000), datetime(2023, 11, 15, 13, 21, 40, 123456)),
        (datetime(2023, 11, 15, 13, 0), None),
    ]
    # given in the CSV, kept; the first visit's is the time replay wrote it
    assert [v["modified_at"] for v in visits[1:]] == [datetime(2023, 11, 15, 13, 21, 40, 123456), visits[2]["login"]]
    assert visits[0]["modified_at"] > datetime(2025, 1, 1)


def test_simulate_into_postgresql(make_settings, postgres_odbc, embedded_kafka):
    schema = f"sim_{uuid.uuid4().hex[:8]}"
    settings = _unique_topics(
        make_settings(
            FITLAKE_SOURCE_ODBC=postgres_odbc, FITLAKE_SOURCE_SCHEMA=schema, FITLAKE_KAFKA_BOOTSTRAP=embedded_kafka
        )
    )
    summary = simulate(settings, members=4, gyms=1, days=1, seed=8, start=START, rates=RATES)
    landed = {s.entity: s.rows for s in land_sql_tables(settings)}
    assert landed == summary.rows
    expected = generate(members=4, gyms=1, days=1, seed=8, start=START, rates=RATES).sql_rows()
    got = sql_rows(settings.landing_root, "gym_logins")
    assert sorted(tuple(r[c] for c in list(r)[:4]) for r in got) == sorted(expected["gym_logins"], key=_sortable)


def test_simulating_the_same_seed_twice_is_a_clear_error_not_a_traceback(settings):
    simulate(settings, members=3, gyms=1, days=1, seed=5, start=START, rates=RATES)
    before = _source_counts(settings)
    with pytest.raises(FitLakeError, match="use another --seed or a fresh source"):
        simulate(settings, members=3, gyms=1, days=1, seed=5, start=START, rates=RATES)
    assert _source_counts(settings) == before  # the failed run's batch was rolled back


def test_without_a_broker_nothing_is_written_to_the_sql_source(make_settings):
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP="127.0.0.1:1", FITLAKE_CONNECT_RETRIES="1")
    with pytest.raises(SourceUnreachable):
        simulate(settings, members=3, gyms=1, days=1, seed=6, start=START, rates=RATES)
    with pytest.raises(SourceUnreachable):
        replay(settings, [SAMPLE])
    assert _source_counts(settings) == {"registered_users": 0, "gym_logins": 0}


def _source_counts(settings) -> dict[str, int]:
    from ingestion.stack import ensure_source_tables

    ensure_source_tables(settings)
    conn = azure_sql.connect_source(settings)
    try:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("registered_users", "gym_logins")}
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_source(request, make_settings, embedded_kafka):
    """Settings with a fresh SQL source on either ODBC driver (the SQL side is under test: one broker)."""
    env = {"FITLAKE_KAFKA_BOOTSTRAP": embedded_kafka}
    if request.param == "postgresql":
        env.update(FITLAKE_SOURCE_ODBC=request.getfixturevalue("postgres_odbc"))
        env.update(FITLAKE_SOURCE_SCHEMA=f"days_{uuid.uuid4().hex[:8]}")
    return _unique_topics(make_settings(**env))


def _source_versions(settings) -> dict[str, set[tuple]]:
    """Every row the source holds now, per table, timestamps as datetimes (the SQLite stand-in keeps text)."""
    from ingestion.stack import ensure_source_tables

    ensure_source_tables(settings)
    dialect = azure_sql.source_dialect(settings)
    conn = azure_sql.connect_source(settings)
    versions = {}
    try:
        for name, table in SOURCE_TABLES.items():
            cursor = conn.cursor()
            columns = ", ".join(dialect.quote(c) for c in table.column_names)
            cursor.execute(f"SELECT {columns} FROM {dialect.table(settings.source_schema, name)}")
            stamps = [i for i, c in enumerate(table.columns) if c.ddl == "timestamp"]
            versions[name] = {
                tuple(datetime.fromisoformat(v) if i in stamps and isinstance(v, str) else v for i, v in enumerate(row))
                for row in cursor.fetchall()
            }
    finally:
        conn.close()
    return versions


def _landed_versions(settings, table: str) -> Counter:
    columns = SOURCE_TABLES[table].column_names
    return Counter(tuple(r[c] for c in columns) for r in sql_rows(settings.landing_root, table))


def test_a_second_simulated_day_lands_completely(sql_source):
    """The README's "simulate another day": every row version of both days lands, exactly once."""
    settings = sql_source
    first_day = default_start(2, datetime.now(UTC))  # as the CLI picks it, one day earlier
    simulate(settings, members=30, gyms=2, days=1, seed=42, start=first_day, rates=RATES)
    land_sql_tables(settings)
    after_first = _source_versions(settings)
    second = simulate(settings, members=30, gyms=2, days=1, seed=43, start=first_day + timedelta(days=1), rates=RATES)
    landed_second = {s.entity: s.rows for s in land_sql_tables(settings)}
    after_second = _source_versions(settings)
    # the second run only adds rows: every one of them lands on the next extract
    assert landed_second == second.rows == {t: len(after_second[t]) - len(after_first[t]) for t in SOURCE_TABLES}
    assert second.rows["registered_users"] == 30 and second.rows["gym_logins"] > 10
    for table in SOURCE_TABLES:
        landed = _landed_versions(settings, table)
        assert max(landed.values()) == 1, f"{table}: a row version landed twice"
        assert set(landed) == after_first[table] | after_second[table], table
    assert land_sql_tables(settings)[0].rows == 0  # nothing new, nothing again


def test_a_recording_replayed_after_a_landing_lands_too(make_settings, tmp_path, caplog):
    """Recorded rows without modified_at are stamped when replayed, so they lie after the watermark."""
    settings = make_settings()  # CSV only: no broker needed
    replay(settings, [SAMPLE / "registered_users.csv"])
    assert _landed_users(settings) and len(_landed_users(settings)) == 3
    later = tmp_path / "registered_users-later.csv"
    later.write_text("user_id,device_id,mac_address,registration_timestamp\n20010,300030,aa:00,1600000000\n")
    replay(settings, [later])  # recorded three years before the sample
    assert {r["user_id"] for r in _landed_users(settings)} == {20001, 20002, 20003, 20010}

    # A recorded modified_at is kept, and replay says when the lander can no longer see it.
    explicit = tmp_path / "registered_users-explicit.csv"
    explicit.write_text(
        "user_id,device_id,mac_address,registration_timestamp,modified_at\n20011,300031,aa:01,1600000000,1600000000\n"
    )
    with caplog.at_level(logging.WARNING, logger="ingestion.replay"):
        replay(settings, [explicit])
    assert "registered_users: 1 replayed row(s) carry a modified_at (earliest 2020-09-13T12:26:40)" in caplog.text
    assert "Leave modified_at out of the CSV" in caplog.text
