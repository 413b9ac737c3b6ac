"""The one seam where source-database specifics live.

Extraction SQL is ANSI with ``?`` parameters; what differs between the
embedded SQLite stand-in, PostgreSQL (tests with real types) and Azure SQL /
SQL Server (production) is identifier quoting, whether a schema qualifies a
table, DDL type names, and how timestamps travel through the ODBC driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ingestion.errors import ConfigError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SQLITE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def validate_identifier(name: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ConfigError(f"{what} {name!r} is not a plain SQL identifier (letters, digits, _)")
    return name


@dataclass(frozen=True)
class SqlDialect:
    name: str
    quote_start: str
    quote_end: str
    qualifies_with_schema: bool
    ddl_types: dict
    # The SQLite ODBC driver truncates bound datetimes to milliseconds, so the
    # stand-in stores timestamps as ISO text, which also sorts correctly.
    timestamps_as_text: bool = False
    # How the extract selects a timestamp column as integer microseconds since 1970 (naive UTC), or
    # None to read it as the driver's datetime. Measured on PostgreSQL ODBC, 500k rows with two
    # timestamps: datetimes made the fetch and its Arrow conversion 1.33 s, integers 0.73 s.
    timestamp_as_epoch_us: str | None = None

    def quote(self, identifier: str) -> str:
        validate_identifier(identifier, "identifier")
        return f"{self.quote_start}{identifier}{self.quote_end}"

    def table(self, schema: str, table: str) -> str:
        if self.qualifies_with_schema:
            return f"{self.quote(schema)}.{self.quote(table)}"
        return self.quote(table)

    def reads_epoch_us(self, ddl: str) -> bool:
        """Whether the extract reads a column of this DDL type as epoch microseconds."""
        return ddl == "timestamp" and self.timestamp_as_epoch_us is not None

    def select_expression(self, column: str, ddl: str) -> str:
        """The extract's SELECT item for one column: the column itself, or its epoch microseconds."""
        if self.reads_epoch_us(ddl):
            return self.timestamp_as_epoch_us.format(column=self.quote(column))
        return self.quote(column)

    def display_name(self, schema: str, table: str) -> str:
        return f"{schema}.{table}" if self.qualifies_with_schema else table

    def timestamp_param(self, value: datetime | None):
        if value is None or not self.timestamps_as_text:
            return value
        return value.strftime(SQLITE_TIMESTAMP_FORMAT)


SQLITE = SqlDialect(
    name="sqlite",
    quote_start='"',
    quote_end='"',
    qualifies_with_schema=False,
    ddl_types={"bigint": "BIGINT", "int": "INTEGER", "varchar17": "VARCHAR(17)", "timestamp": "TEXT"},
    timestamps_as_text=True,
)
POSTGRESQL = SqlDialect(
    name="postgresql",
    quote_start='"',
    quote_end='"',
    qualifies_with_schema=True,
    ddl_types={"bigint": "BIGINT", "int": "INTEGER", "varchar17": "VARCHAR(17)", "timestamp": "TIMESTAMP(6)"},
    # EXTRACT returns an exact numeric from PostgreSQL 14 on (a double before: supported sources are 14+)
    timestamp_as_epoch_us="CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)",
)
SQL_SERVER = SqlDialect(
    name="sqlserver",
    quote_start="[",
    quote_end="]",
    qualifies_with_schema=True,
    ddl_types={"bigint": "BIGINT", "int": "INT", "varchar17": "VARCHAR(17)", "timestamp": "DATETIME2(6)"},
    # timestamps stay datetimes: DATEDIFF_BIG(MICROSECOND, ...) would be the epoch read, but no SQL
    # Server runs here to test it against
)
DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL, SQL_SERVER)}


def dialect_for(odbc_connection_string: str, override: str | None = None) -> SqlDialect:
    """Pick the dialect from FITLAKE_SOURCE_DIALECT, else from the ODBC driver name."""
    if override:
        try:
            return DIALECTS[override.lower()]
        except KeyError:
            raise ConfigError(
                f"FITLAKE_SOURCE_DIALECT={override!r} is unknown; use one of {sorted(DIALECTS)}"
            ) from None
    match = re.search(r"driver\s*=\s*\{?([^;}]*)", odbc_connection_string, re.IGNORECASE)
    driver = (match.group(1) if match else "").lower()
    if "sqlite" in driver:
        return SQLITE
    if "postgres" in driver:
        return POSTGRESQL
    if "sql server" in driver or "freetds" in driver or "tds" in driver:
        return SQL_SERVER
    raise ConfigError(
        f"cannot tell the SQL dialect from ODBC driver {driver!r}; "
        "set FITLAKE_SOURCE_DIALECT to sqlite, postgresql or sqlserver"
    )


def azure_sql_connection_string(server: str, database: str, authentication: str | None = None) -> str:
    """Connection string for Azure SQL through Microsoft's ODBC Driver 18.

    The password is never part of it: :func:`ingestion.azure_sql.connect_source`
    appends ``PWD`` from FITLAKE_SOURCE_PASSWORD at connect time, or use
    ``authentication="ActiveDirectoryMsi"`` for a managed identity.
    """
    parts = [
        "Driver={ODBC Driver 18 for SQL Server}",
        f"Server=tcp:{server},1433",
        f"Database={database}",
        "Encrypt=yes",
        "TrustServerCertificate=no",
        "Connection Timeout=30",
    ]
    if authentication:
        parts.append(f"Authentication={authentication}")
    return ";".join(parts) + ";"
