"""Reconciliation on real sources: the SQLite stand-in through its ODBC driver, and both Kafka brokers."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

import pytest

from ingestion import azure_sql
from ingestion.kafka import ensure_topics, make_producer
from ingestion.land_kafka import land_kafka_topic
from ingestion.land_sql import land_sql_tables
from ingestion.reconcile import kafka_lag, reconcile_sql
from ingestion.source_tables import GYM_LOGINS, REGISTERED_USERS
from ingestion.stack import ensure_source_tables

NOW = datetime(2026, 1, 10, 12, 0, 0, 123456)


@pytest.fixture
def sql_settings(make_settings):
    settings = make_settings()
    ensure_source_tables(settings)
    return settings


def _insert_users(settings, rows):
    conn = azure_sql.connect_source(settings)
    try:
        azure_sql.insert_rows(conn, azure_sql.source_dialect(settings), settings.source_schema, REGISTERED_USERS, rows)
    finally:
        conn.close()


def _user(user_id: int, modified_at: datetime) -> tuple:
    return (
        user_id,
        300000 + user_id,
        f"0a:1b:2c:3d:{user_id // 256:02x}:{user_id % 256:02x}",
        modified_at,
        modified_at,
    )


def _by_entity(results):
    return {r.entity: r for r in results}


def test_sql_source_fully_landed_reconciles(sql_settings):
    _insert_users(sql_settings, [_user(i, NOW + timedelta(seconds=i)) for i in range(1, 51)])
    land_sql_tables(sql_settings)
    results = _by_entity(reconcile_sql(sql_settings))
    users = results["registered_users"]
    assert users.status == "pass", users.detail
    assert users.metrics["source_rows"] == users.metrics["landed_versions"] == 50
    assert users.metrics["lost_versions"] == 0 and users.value == 0
    assert results["gym_logins"].status == "pass" and results["gym_logins"].metrics["source_rows"] == 0


def test_a_row_written_behind_the_watermark_is_reported_lost(sql_settings):
    """The loss of the issue: a source row stamped far behind the watermark never lands."""
    _insert_users(sql_settings, [_user(i, NOW + timedelta(seconds=i)) for i in range(1, 11)])
    land_sql_tables(sql_settings)
    # one row an hour behind the watermark (outside the 10-minute overlap), one inside the overlap
    _insert_users(sql_settings, [_user(900, NOW - timedelta(hours=1)), _user(901, NOW + timedelta(seconds=5))])
    landed = land_sql_tables(sql_settings, ["registered_users"])[0]
    assert landed.rows == 1  # the overlap catches the late commit, not the row an hour behind

    [users] = reconcile_sql(sql_settings, ["registered_users"])
    assert users.status == "error"
    assert users.value == 1 and users.metrics["lost_keys"] == 1
    assert users.metrics["source_rows"] == 12 and users.metrics["landed_versions"] == 11
    assert "behind the watermark never landed" in users.detail and "modified_at" in users.detail


def test_rows_newer_than_the_watermark_are_pending_not_lost(sql_settings):
    _insert_users(sql_settings, [_user(1, NOW)])
    land_sql_tables(sql_settings)
    _insert_users(sql_settings, [_user(2, NOW + timedelta(hours=2))])
    [users] = reconcile_sql(sql_settings, ["registered_users"])
    assert users.status == "pass"
    assert users.metrics["pending_versions"] == 1 and users.metrics["lost_versions"] == 0
    assert "wait for the next landing run" in users.detail


def test_a_logout_update_stamped_behind_the_watermark_is_a_lost_version(sql_settings):
    conn = azure_sql.connect_source(sql_settings)
    dialect = azure_sql.source_dialect(sql_settings)
    login = NOW - timedelta(hours=3)
    try:
        azure_sql.insert_rows(conn, dialect, sql_settings.source_schema, GYM_LOGINS, [("aa", 1, login, None, NOW)])
        land_sql_tables(sql_settings, ["gym_logins"])
        # the gym app sets the logout but keeps an old modified_at: the new version never lands
        azure_sql.set_gym_logout(conn, dialect, sql_settings.source_schema, [(NOW, login, "aa", 1, login)])
    finally:
        conn.close()
    land_sql_tables(sql_settings, ["gym_logins"])
    [visits] = reconcile_sql(sql_settings, ["gym_logins"])
    assert visits.status == "error" and visits.value == 1
    assert visits.metrics["lost_keys"] == 0  # the visit landed, its update did not


def test_an_unreachable_source_is_an_error_row_not_a_crash(make_settings, tmp_path):
    settings = make_settings(FITLAKE_SOURCE_ODBC=f"Driver=SQLite3;Database={tmp_path / 'missing.sqlite'}")
    results = reconcile_sql(settings)
    assert {r.status for r in results} == {"error"}
    assert all("not run" in r.detail and "stack-up" in r.detail for r in results)


@pytest.fixture
def kafka_settings(make_settings, kafka_bootstrap):
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap)
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(settings, kafka_topics=(f"bpm_{suffix}",))


def _produce(settings, topic: str, count: int) -> None:
    producer = make_producer(settings)
    for i in range(count):
        producer.produce(topic, key=str(i % 7), value=b'{"device_id": 1, "time": 1700000000, "heartrate": 80}')
    assert producer.flush(30) == 0


def test_kafka_lag_is_end_offsets_minus_landed_offsets(kafka_settings):
    [topic] = kafka_settings.kafka_topics
    ensure_topics(kafka_settings, [topic], partitions=2)
    _produce(kafka_settings, topic, 40)
    [before] = kafka_lag(kafka_settings)
    assert before.status == "pass" and before.value == 40, before.detail  # nothing landed: all 40 wait

    land_kafka_topic(kafka_settings, topic)
    [landed] = kafka_lag(kafka_settings)
    assert landed.value == 0 and landed.status == "pass", landed.detail

    _produce(kafka_settings, topic, 25)
    [behind] = kafka_lag(kafka_settings, max_lag=10)
    assert behind.value == 25 and behind.status == "warn", behind.detail
    assert sum(p["lag"] for p in behind.metrics["partitions"].values()) == 25
    assert "p0: landed to" in behind.detail and "p1: landed to" in behind.detail


def test_kafka_lag_of_a_missing_topic_is_an_error(kafka_settings):
    [result] = kafka_lag(kafka_settings, ["no_such_topic_" + uuid.uuid4().hex[:6]])
    assert result.status == "error" and "does not exist" in result.detail
