"""Settings of a landing task from Airflow connections: `fitlake_source` (SQL) and `fitlake_kafka`.

Read at task run time, never when a DAG file is parsed. For each source, in this order:

1. The Airflow connection, found through Airflow's own secrets search path (a secrets backend such
   as Azure Key Vault, then `AIRFLOW_CONN_<ID>` variables, then the metadata database). When it
   exists it is the whole definition of that source: `FITLAKE_SOURCE_ODBC` / `FITLAKE_SOURCE_PASSWORD`
   (or `FITLAKE_KAFKA_BOOTSTRAP` / `FITLAKE_KAFKA_OPT_*`) are then ignored.
2. Otherwise the `FITLAKE_*` variables with their embedded defaults, exactly as the CLI reads them,
   unless `FITLAKE_CONNECTIONS=required`: then a missing connection fails the task, naming it.

Everything that is not a credential (landing root, timeouts, schema, ...) always comes from the
`FITLAKE_*` variables. The connection's password travels only in `Settings.source_password` (appended
at connect time) or in the librdkafka options, and is registered with Airflow's log masker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ingestion.config import KAFKA_OPTION_PREFIX, Settings, load_settings
from ingestion.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE_CONN_ID = "fitlake_source"
KAFKA_CONN_ID = "fitlake_kafka"
SQL_CONN_TYPES = ("odbc", "mssql")
KAFKA_CONN_TYPES = ("kafka",)
DEFAULT_ODBC_DRIVER = "ODBC Driver 18 for SQL Server"
MODES = ("auto", "required", "off")

# Extra keys that configure pyodbc or SQLAlchemy in Airflow's ODBC hook, not the ODBC string.
_NOT_ODBC_KEYWORDS = {"driver", "dsn", "connect_kwargs", "sqlalchemy_scheme", "placeholder"}
_PASSWORD_KEYWORDS = {"pwd", "password"}
# librdkafka settings that hold a credential although their name says neither "password" nor "secret".
_KAFKA_SECRET_KEYS = {"ssl.key.pem", "sasl.oauthbearer.config"}


def _odbc_value(value: Any) -> str:
    """An ODBC attribute value, braced when it would otherwise end the attribute (`;`) or be trimmed."""
    text = str(value)
    if any(c in text for c in ";{}") or text != text.strip():
        return "{" + text.replace("}", "}}") + "}"
    return text


def source_from_connection(conn, allow_driver_in_extra: bool = False) -> dict[str, str]:
    """`FITLAKE_SOURCE_ODBC` and `FITLAKE_SOURCE_PASSWORD` for an ODBC or MSSQL connection.

    host -> Server, port -> Port (SQL Server: Server=host,port), schema -> Database (Airflow's schema
    field is the database), login -> Uid, extra -> further `key=value` attributes. The driver is
    `ODBC Driver 18 for SQL Server` unless the extra names one and `[providers.odbc]
    allow_driver_in_extra` allows it, as Airflow's ODBC hook does (a driver is a library loaded into
    the worker, so naming it is not left to whoever may edit connections).
    """
    if conn.conn_type not in SQL_CONN_TYPES:
        raise ConfigError(
            f"Airflow connection `{conn.conn_id}` has type {conn.conn_type!r}; the SQL source needs one of "
            f"{', '.join(SQL_CONN_TYPES)}"
        )
    extra = {str(k): v for k, v in (conn.extra_dejson or {}).items()}
    lowered = {k.lower(): k for k in extra}
    password = conn.password or None
    for keyword in _PASSWORD_KEYWORDS & lowered.keys():
        # A password put in the extra is still a password: keep it out of the (logged) ODBC string.
        password = password or str(extra[lowered[keyword]])
        del extra[lowered[keyword]]
    driver = DEFAULT_ODBC_DRIVER
    if "driver" in lowered:
        if not allow_driver_in_extra:
            raise ConfigError(
                f"Airflow connection `{conn.conn_id}` names an ODBC driver in its extra, which Airflow allows "
                "only with `[providers.odbc] allow_driver_in_extra = True` "
                "(AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA=True); set it, or remove `driver` to use "
                f"{DEFAULT_ODBC_DRIVER}"
            )
        driver = str(extra[lowered["driver"]]).strip().strip("{}")
    parts = [f"Driver={{{driver}}}"]
    if "dsn" in lowered:
        parts.append(f"DSN={_odbc_value(extra[lowered['dsn']])}")
    sql_server = "sql server" in driver.lower()
    if conn.host:
        server = f"{conn.host},{conn.port}" if sql_server and conn.port else conn.host
        parts.append(f"Server={_odbc_value(server)}")
    if conn.port and not sql_server:
        parts.append(f"Port={int(conn.port)}")
    if conn.schema:
        parts.append(f"Database={_odbc_value(conn.schema)}")
    if conn.login:
        parts.append(f"Uid={_odbc_value(conn.login)}")
    for key, value in extra.items():
        if key.lower() not in _NOT_ODBC_KEYWORDS:
            parts.append(f"{key}={_odbc_value(value)}")
    return {"FITLAKE_SOURCE_ODBC": ";".join(parts) + ";", "FITLAKE_SOURCE_PASSWORD": password or ""}


def kafka_from_connection(conn) -> tuple[str, dict[str, str]]:
    """Bootstrap servers and librdkafka settings from a Kafka connection's extra (the provider's format)."""
    if conn.conn_type not in KAFKA_CONN_TYPES:
        raise ConfigError(
            f"Airflow connection `{conn.conn_id}` has type {conn.conn_type!r}; Kafka needs a `kafka` connection"
        )
    options = {}
    for key, value in (conn.extra_dejson or {}).items():
        options[str(key)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    bootstrap = options.pop("bootstrap.servers", "").strip()
    if not bootstrap:
        raise ConfigError(
            f"Airflow connection `{conn.conn_id}` has no `bootstrap.servers` in its extra; the Kafka provider's "
            'connection keeps the librdkafka settings there, e.g. {"bootstrap.servers": "broker1:9093"}'
        )
    return bootstrap, options


def _airflow_lookup(conn_id: str):
    """The connection from Airflow's secrets search path, or None when no backend has it."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _allow_driver_in_extra() -> bool:
    from airflow.sdk.configuration import conf

    return conf.getboolean("providers.odbc", "allow_driver_in_extra", fallback=False)


def _mask(values) -> None:
    from airflow.sdk.log import mask_secret

    for value in values:
        if value:
            mask_secret(value)


def _mode(env: Mapping[str, str]) -> str:
    mode = (env.get("FITLAKE_CONNECTIONS") or "auto").strip().lower()
    if mode not in MODES:
        raise ConfigError(f"FITLAKE_CONNECTIONS={mode!r} is unknown; use one of {', '.join(MODES)}")
    return mode


def _conn_id(env: Mapping[str, str], source: str) -> str:
    name = "FITLAKE_SOURCE_CONN_ID" if source == "sql" else "FITLAKE_KAFKA_CONN_ID"
    return (env.get(name) or (SOURCE_CONN_ID if source == "sql" else KAFKA_CONN_ID)).strip()


def landing_settings(
    source: str,
    env: Mapping[str, str] | None = None,
    lookup: Callable[[str], Any] = _airflow_lookup,
) -> tuple[Settings, str]:
    """Settings for landing `source` ("sql" or "kafka") and a line saying where its credentials came from."""
    env = dict(os.environ if env is None else env)
    variables = "FITLAKE_SOURCE_*" if source == "sql" else "FITLAKE_KAFKA_*"
    mode = _mode(env)
    if mode == "off":
        return load_settings(env), f"{variables} variables (FITLAKE_CONNECTIONS=off)"
    conn_id = _conn_id(env, source)
    conn = lookup(conn_id)
    if conn is None:
        if mode == "required":
            secret = "airflow-connections-" + conn_id.replace("_", "-")
            raise ConfigError(
                f"Airflow connection `{conn_id}` not found, and FITLAKE_CONNECTIONS=required: add it (Admin > "
                f"Connections, AIRFLOW_CONN_{conn_id.upper()}, or the secrets backend, e.g. the Key Vault secret "
                f"{secret}), or set FITLAKE_CONNECTIONS=auto to use the {variables} variables"
            )
        return load_settings(env), f"{variables} variables (no Airflow connection `{conn_id}`)"
    origin = f"Airflow connection `{conn_id}` ({conn.conn_type})"
    if source == "sql":
        overrides = source_from_connection(conn, _allow_driver_in_extra())
        _mask([overrides["FITLAKE_SOURCE_PASSWORD"]])
        return load_settings({**env, **overrides}), origin
    bootstrap, options = kafka_from_connection(conn)
    _mask(value for key, value in options.items() if "password" in key or "secret" in key or key in _KAFKA_SECRET_KEYS)
    without_options = {k: v for k, v in env.items() if not k.startswith(KAFKA_OPTION_PREFIX)}
    settings = load_settings({**without_options, "FITLAKE_KAFKA_BOOTSTRAP": bootstrap})
    return dataclasses.replace(settings, kafka_options=options), origin
