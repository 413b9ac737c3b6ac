"""Connection to the SQL source (Azure SQL in production) over pyodbc.

Every statement is built from validated identifiers (see
:mod:`ingestion.source_tables`) with values bound as ``?`` parameters.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyodbc

from ingestion.config import Settings
from ingestion.errors import SchemaDriftError, SourceUnreachable
from ingestion.source_tables import SOURCE_TABLES, SourceTable
from ingestion.sql_dialects import SqlDialect, dialect_for

log = logging.getLogger(__name__)

# SQLSTATE classes that mean "could not reach / log in", worth a retry.
_CONNECTION_SQLSTATES = ("08", "HYT", "28")


class ModifiedAtClock:
    """``modified_at`` as a source application stamps it: wall-clock UTC now, when the row is written.

    Naive UTC with microsecond precision, strictly increasing per clock (two rows written in the same
    microsecond, or a wall clock stepped back, still get distinct, ordered stamps), so every row version
    written after a landing lies after that landing's watermark and the next extract takes it.
    """

    def __init__(self, now=lambda: datetime.now(UTC)):
        self._now = now
        self._last: datetime | None = None

    def stamp(self) -> datetime:
        now = self._now().astimezone(UTC).replace(tzinfo=None)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


def source_dialect(settings: Settings) -> SqlDialect:
    return dialect_for(settings.source_odbc, settings.source_dialect)


def _redacted(connection_string: str) -> str:
    parts = []
    for part in connection_string.split(";"):
        key = part.split("=", 1)[0].strip().lower()
        parts.append(f"{part.split('=', 1)[0]}=***" if key in ("pwd", "password") else part)
    return ";".join(parts)


def connect_source(settings: Settings, autocommit: bool = True, create: bool = False) -> pyodbc.Connection:
    """Open a connection, retrying with backoff; fail with SourceUnreachable.

    ``create`` lets the embedded SQLite stand-in be created; otherwise a missing
    stand-in file is an error rather than an empty database created by the driver.
    """
    if not create and source_dialect(settings).name == "sqlite":
        match = re.search(r"database\s*=\s*([^;]+)", settings.source_odbc, re.IGNORECASE)
        if match and not Path(match.group(1).strip()).exists():
            raise SourceUnreachable(
                f"the embedded SQL stand-in {match.group(1).strip()} does not exist: start the embedded "
                "stack with `make stack-up`, or set FITLAKE_SOURCE_ODBC"
            )
    connection_string = settings.source_odbc
    if settings.source_password:
        connection_string = connection_string.rstrip(";") + f";PWD={{{settings.source_password}}}"
    attempts = settings.connect_retries
    for attempt in range(1, attempts + 1):
        try:
            return pyodbc.connect(connection_string, autocommit=autocommit, timeout=15)
        except pyodbc.Error as exc:
            sqlstate = exc.args[0] if exc.args else ""
            message = exc.args[1] if len(exc.args) > 1 else str(exc)
            if attempt == attempts or not str(sqlstate).startswith(_CONNECTION_SQLSTATES + ("IM", "HY")):
                raise SourceUnreachable(
                    f"cannot connect to the SQL source ({_redacted(settings.source_odbc)}) after "
                    f"{attempt} attempt(s): [{sqlstate}] {message}. Check FITLAKE_SOURCE_ODBC, that the "
                    "ODBC driver is installed (odbcinst -q -d) and that the server is reachable."
                ) from exc
            delay = settings.retry_backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                "SQL source not reachable (attempt %d/%d): %s; retrying in %.1fs", attempt, attempts, message, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def check_table_columns(cursor: pyodbc.Cursor, dialect: SqlDialect, schema: str, table: SourceTable) -> None:
    """Fail with an error naming the table or column that the source lacks."""
    where = dialect.display_name(schema, table.name)
    try:
        cursor.execute(f"SELECT * FROM {dialect.table(schema, table.name)} WHERE 1 = 0")
    except pyodbc.Error as exc:
        raise SchemaDriftError(
            f"source table {where} cannot be read: {exc.args[-1]}. Is the table missing, or "
            "FITLAKE_SOURCE_SCHEMA wrong?"
        ) from exc
    present = {d[0].lower() for d in cursor.description}
    cursor.fetchall()
    missing = [c for c in table.column_names if c.lower() not in present]
    if missing:
        raise SchemaDriftError(
            f"source table {where} lacks column(s) {', '.join(missing)} "
            f"(it has {', '.join(sorted(present))}); the data contract expects "
            f"{', '.join(table.column_names)}"
        )


def create_source_tables(conn: pyodbc.Connection, dialect: SqlDialect, schema: str) -> None:
    """Create the contract's dbo tables if absent (embedded stand-in and tests)."""
    cursor = conn.cursor()
    if dialect.qualifies_with_schema and dialect.name == "postgresql":
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {dialect.quote(schema)}")
    for table in SOURCE_TABLES.values():
        columns = ", ".join(
            f"{dialect.quote(c.name)} {dialect.ddl_types[c.ddl]}{'' if c.nullable else ' NOT NULL'}"
            for c in table.columns
        )
        key = ", ".join(dialect.quote(k) for k in table.key)
        ddl = f"CREATE TABLE {dialect.table(schema, table.name)} ({columns}, PRIMARY KEY ({key}))"
        if dialect.name == "sqlserver":
            ddl = f"IF OBJECT_ID(N'{schema}.{table.name}') IS NULL {ddl}"
        else:
            ddl = ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
        cursor.execute(ddl)
        index = dialect.quote(f"ix_{table.name}_{table.watermark}")
        target = f"{dialect.table(schema, table.name)} ({dialect.quote(table.watermark)})"
        if dialect.name == "sqlserver":
            cursor.execute(
                f"IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = ?) CREATE INDEX {index} ON {target}",
                f"ix_{table.name}_{table.watermark}",
            )
        else:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {target}")
    if not conn.autocommit:
        conn.commit()


@contextmanager
def _one_transaction(conn: pyodbc.Connection):
    """Run a batch of statements as one transaction (in autocommit mode SQLite would fsync every row)."""
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = was_autocommit


def insert_rows(
    conn: pyodbc.Connection,
    dialect: SqlDialect,
    schema: str,
    table: SourceTable,
    rows: Iterable[Sequence],
    columns: Sequence[str] | None = None,
) -> int:
    """Insert rows (tuples in ``columns`` order, default all columns); returns the count."""
    columns = list(columns or table.column_names)
    timestamp_positions = [
        i for i, name in enumerate(columns) if next(c for c in table.columns if c.name == name).ddl == "timestamp"
    ]
    sql = (
        f"INSERT INTO {dialect.table(schema, table.name)} "
        f"({', '.join(dialect.quote(c) for c in columns)}) VALUES ({', '.join('?' for _ in columns)})"
    )
    prepared = []
    for row in rows:
        row = list(row)
        for i in timestamp_positions:
            row[i] = dialect.timestamp_param(row[i])
        prepared.append(row)
    if not prepared:
        return 0
    with _one_transaction(conn):
        cursor = conn.cursor()
        cursor.fast_executemany = dialect.name == "sqlserver"
        cursor.executemany(sql, prepared)
    return len(prepared)


def set_gym_logout(conn, dialect: SqlDialect, schema: str, updates: Iterable[Sequence]) -> int:
    """Apply (logout, modified_at, mac_address, gym, login) updates, as the gym app does at exit."""
    sql = (
        f"UPDATE {dialect.table(schema, 'gym_logins')} SET {dialect.quote('logout')} = ?, "
        f"{dialect.quote('modified_at')} = ? WHERE {dialect.quote('mac_address')} = ? "
        f"AND {dialect.quote('gym')} = ? AND {dialect.quote('login')} = ?"
    )
    prepared = [
        (dialect.timestamp_param(lo), dialect.timestamp_param(m), mac, gym, dialect.timestamp_param(li))
        for lo, m, mac, gym, li in updates
    ]
    if prepared:
        with _one_transaction(conn):
            conn.cursor().executemany(sql, prepared)
    return len(prepared)
