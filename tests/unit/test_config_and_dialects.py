"""Settings from the environment and the SQL dialect seam."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ingestion.azure_sql import _redacted
from ingestion.config import load_settings
from ingestion.errors import ConfigError
from ingestion.sql_dialects import (
    POSTGRESQL,
    SQL_SERVER,
    SQLITE,
    azure_sql_connection_string,
    dialect_for,
    validate_identifier,
)


def test_embedded_defaults_live_under_the_data_root(tmp_path):
    settings = load_settings({"FITLAKE_DATA_ROOT": str(tmp_path)})
    assert settings.landing_root == tmp_path / "landing"
    assert settings.source_odbc == f"Driver=SQLite3;Database={tmp_path}/source/azure_sql_standin.sqlite"
    assert settings.kafka_bootstrap is None and settings.source_schema == "dbo"
    assert settings.sql_overlap == timedelta(minutes=10)


def test_kafka_options_pass_through_to_librdkafka(tmp_path):
    settings = load_settings(
        {
            "FITLAKE_DATA_ROOT": str(tmp_path),
            "FITLAKE_KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL",
            "FITLAKE_KAFKA_OPT_SASL_MECHANISMS": "PLAIN",
        }
    )
    assert settings.kafka_options == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FITLAKE_SQL_FETCH_ROWS", "many", "is not a whole number"),
        ("FITLAKE_SQL_FETCH_ROWS", "0", "must be at least 1"),
        ("FITLAKE_SOURCE_SCHEMA", "dbo; drop table x", "not a plain SQL identifier"),
    ],
)
def test_invalid_settings_are_named(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"FITLAKE_DATA_ROOT": str(tmp_path), name: value})


def test_without_brokers_the_error_says_how_to_start_the_embedded_one(tmp_path):
    settings = load_settings({"FITLAKE_DATA_ROOT": str(tmp_path)})
    with pytest.raises(ConfigError, match="make stack-up"):
        settings.resolved_kafka_bootstrap()


def test_password_is_not_in_the_settings_repr(tmp_path):
    settings = load_settings({"FITLAKE_DATA_ROOT": str(tmp_path), "FITLAKE_SOURCE_PASSWORD": "hunter2"})
    assert settings.source_password == "hunter2" and "hunter2" not in repr(settings)
    assert _redacted("Driver=x;Server=y;PWD={hunter2};") == "Driver=x;Server=y;PWD=***;"


@pytest.mark.parametrize(
    ("connection_string", "dialect"),
    [
        ("Driver=SQLite3;Database=/tmp/x.db", SQLITE),
        ("Driver={PostgreSQL Unicode};Server=127.0.0.1", POSTGRESQL),
        (azure_sql_connection_string("fitlake.database.windows.net", "fitness"), SQL_SERVER),
        ("DRIVER={FreeTDS};Server=x", SQL_SERVER),
    ],
)
def test_dialect_follows_the_odbc_driver(connection_string, dialect):
    assert dialect_for(connection_string) is dialect


def test_unknown_driver_asks_for_an_explicit_dialect():
    with pytest.raises(ConfigError, match="FITLAKE_SOURCE_DIALECT"):
        dialect_for("Driver=Oracle;")
    assert dialect_for("Driver=Oracle;", override="sqlserver") is SQL_SERVER


def test_quoting_and_qualification_per_dialect():
    assert SQL_SERVER.table("dbo", "gym_logins") == "[dbo].[gym_logins]"
    assert POSTGRESQL.table("dbo", "gym_logins") == '"dbo"."gym_logins"'
    assert SQLITE.table("dbo", "gym_logins") == '"gym_logins"'


@pytest.mark.parametrize("name", ["x]; DROP TABLE y --", 'a"b', "1abc", "", "a b"])
def test_identifiers_are_validated(name):
    with pytest.raises(ConfigError):
        validate_identifier(name, "table")


def test_azure_sql_connection_string_encrypts_and_has_no_password():
    text = azure_sql_connection_string("srv.database.windows.net", "fitness", "ActiveDirectoryMsi")
    assert "Driver={ODBC Driver 18 for SQL Server}" in text and "Encrypt=yes" in text
    assert "TrustServerCertificate=no" in text and "PWD" not in text.upper()


def test_sqlite_timestamps_travel_as_sortable_text_with_microseconds():
    value = datetime(2023, 11, 14, 22, 13, 20, 123456)
    assert SQLITE.timestamp_param(value) == "2023-11-14 22:13:20.123456"
    assert SQLITE.timestamp_param(value.replace(microsecond=0)) == "2023-11-14 22:13:20.000000"
    assert POSTGRESQL.timestamp_param(value) is value
