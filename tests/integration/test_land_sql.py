"""The SQL extractor through real ODBC drivers: SQLite3 (embedded stand-in) and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from ingestion import azure_sql
from ingestion.errors import SchemaDriftError, SourceUnreachable
from ingestion.land_sql import land_sql_table, land_sql_tables
from ingestion.source_tables import GYM_LOGINS, REGISTERED_USERS
from ingestion.stack import ensure_source_tables, free_port
from ingestion.state import latest_sql_batch
from tests.support.landing import sql_rows, temp_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = datetime(2023, 11, 14, 22, 13, 20, 123456)


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request, make_settings):
    """Settings plus an open connection to a fresh source with the dbo tables."""
    if request.param == "sqlite":
        settings = make_settings()
    else:
        settings = make_settings(FITLAKE_SOURCE_ODBC=request.getfixturevalue("postgres_odbc"))
    ensure_source_tables(settings)
    conn = azure_sql.connect_source(settings)
    dialect = azure_sql.source_dialect(settings)
    for table in ("registered_users", "gym_logins"):  # the PostgreSQL cluster is shared by the session
        conn.cursor().execute(f"DROP TABLE {dialect.table(settings.source_schema, table)}")
    azure_sql.create_source_tables(conn, dialect, settings.source_schema)
    yield settings, conn, dialect
    conn.close()


def users(ids, modified_at=T0):
    return [
        (
            i,
            300_000 + i,
            f"0a:1b:2c:3d:{i // 256 % 256:02x}:{i % 256:02x}",
            T0 - timedelta(days=1, microseconds=i),
            modified_at,
        )
        for i in ids
    ]


def landed_keys(settings, table, key):
    return Counter(tuple(r[k] for k in key) for r in sql_rows(settings.landing_root, table))


def test_lands_rows_with_microsecond_timestamps_and_is_incremental(source):
    settings, conn, dialect = source
    azure_sql.insert_rows(conn, dialect, "dbo", REGISTERED_USERS, users(range(1, 101)))
    first = land_sql_table(settings, REGISTERED_USERS)
    assert (first.rows, first.files) == (100, 1)
    rows = sorted(sql_rows(settings.landing_root, "registered_users"), key=lambda r: r["user_id"])
    assert rows[0] == {
        "user_id": 1,
        "device_id": 300_001,
        "mac_address": "0a:1b:2c:3d:00:01",
        "registration_timestamp": datetime(2023, 11, 13, 22, 13, 20, 123455),
        "modified_at": T0,
    }
    azure_sql.insert_rows(conn, dialect, "dbo", REGISTERED_USERS, users(range(101, 111), T0 + timedelta(hours=1)))
    second = land_sql_table(settings, REGISTERED_USERS)
    assert second.rows == 10
    assert land_sql_table(settings, REGISTERED_USERS).rows == 0
    assert landed_keys(settings, "registered_users", ["user_id"]) == Counter({(i,): 1 for i in range(1, 111)})


def test_rows_sharing_the_watermark_or_committing_late_are_not_lost(source):
    settings, conn, dialect = source
    azure_sql.insert_rows(conn, dialect, "dbo", REGISTERED_USERS, users(range(1, 6), T0))
    land_sql_table(settings, REGISTERED_USERS)
    # Same watermark value as the last extract, and an older value committed late (within the overlap).
    azure_sql.insert_rows(conn, dialect, "dbo", REGISTERED_USERS, users([6], T0))
    azure_sql.insert_rows(conn, dialect, "dbo", REGISTERED_USERS, users([7], T0 - timedelta(minutes=5)))
    assert land_sql_table(settings, REGISTERED_USERS).rows == 2
    assert landed_keys(settings, "registered_users", ["user_id"]) == Counter({(i,): 1 for i in range(1, 8)})


def test_a_logout_set_later_is_extracted_again_as_a_new_version(source):
    settings, conn, dialect = source
    login = T0
    azure_sql.insert_rows(
        conn,
        dialect,
        "dbo",
        GYM_LOGINS,
        [("0a:1b:2c:3d:4e:5f", 2, login, None, login), ("0a:1b:2c:3d:4e:60", 3, login, None, login)],
    )
    land_sql_table(settings, GYM_LOGINS)
    logout = login + timedelta(minutes=75, microseconds=500_000)
    azure_sql.set_gym_logout(conn, dialect, "dbo", [(logout, logout, "0a:1b:2c:3d:4e:5f", 2, login)])
    assert land_sql_table(settings, GYM_LOGINS).rows == 1
    versions = sorted(
        (r["mac_address"], r["logout"] is not None, r["modified_at"])
        for r in sql_rows(settings.landing_root, "gym_logins")
    )
    assert versions == [
        ("0a:1b:2c:3d:4e:5f", False, login),
        ("0a:1b:2c:3d:4e:5f", True, logout),
        ("0a:1b:2c:3d:4e:60", False, login),
    ]
    latest = [r for r in sql_rows(settings.landing_root, "gym_logins") if r["logout"]][0]
    assert latest["logout"] == logout


def test_timestamps_land_and_hash_as_the_driver_reads_them_at_the_edges(source):
    """PostgreSQL's extract reads timestamps as epoch microseconds: the landed values, and the overlap
    hashes a later run compares against (written before by a lander that read datetimes), must be what
    the driver's own datetimes give, before 1970 and at year 9999 too."""
    settings, conn, dialect = source
    edges = [datetime(1969, 12, 31, 23, 59, 59, 999999), datetime(1900, 1, 1, 0, 0, 0, 1), datetime(9999, 12, 31)]
    logins = [
        (f"0a:1b:2c:3d:4e:{i:02x}", i, edge, None if i == 1 else edge + timedelta(microseconds=1), T0)
        for i, edge in enumerate(edges)
    ]
    azure_sql.insert_rows(conn, dialect, "dbo", GYM_LOGINS, logins)
    land_sql_table(settings, GYM_LOGINS)

    landed = sorted(sql_rows(settings.landing_root, "gym_logins"), key=lambda r: r["gym"])
    assert [(r["login"], r["logout"], r["modified_at"]) for r in landed] == [(li, lo, m) for _, _, li, lo, m in logins]
    columns = ", ".join(dialect.quote(c) for c in GYM_LOGINS.column_names)
    as_read = conn.cursor().execute(f"SELECT {columns} FROM {dialect.table('dbo', 'gym_logins')}").fetchall()
    hashes_of_datetimes = {hashlib.blake2b(repr(tuple(r)).encode(), digest_size=12).hexdigest() for r in as_read}
    assert set(latest_sql_batch(settings.landing_root, "gym_logins").commit["overlap_hashes"]) == hashes_of_datetimes
    assert land_sql_table(settings, GYM_LOGINS).rows == 0  # the overlap, read again, is recognised


def test_missing_column_is_named(source):
    settings, conn, dialect = source
    conn.cursor().execute(f"DROP TABLE {dialect.table('dbo', 'registered_users')}")
    conn.cursor().execute(
        f"CREATE TABLE {dialect.table('dbo', 'registered_users')} (user_id BIGINT, modified_at "
        f"{dialect.ddl_types['timestamp']})"
    )
    with pytest.raises(SchemaDriftError, match="lacks column.*device_id, mac_address, registration_timestamp"):
        land_sql_table(settings, REGISTERED_USERS)


def test_missing_table_is_named(source):
    settings, conn, dialect = source
    conn.cursor().execute(f"DROP TABLE {dialect.table('dbo', 'gym_logins')}")
    with pytest.raises(SchemaDriftError, match="gym_logins cannot be read"):
        land_sql_tables(settings, ["gym_logins"])


def test_unknown_table_in_configuration_is_rejected(make_settings):
    from ingestion.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown source table"):
        land_sql_tables(make_settings(), ["registered_users; DROP TABLE x"])


def test_unreachable_database_fails_clearly_after_retries(make_settings):
    settings = make_settings(
        FITLAKE_SOURCE_ODBC=f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={free_port()};Database=x;Uid=u;",
        FITLAKE_SOURCE_PASSWORD="s3cret-never-logged",
        FITLAKE_CONNECT_RETRIES=2,
    )
    with pytest.raises(SourceUnreachable, match="after 2 attempt") as error:
        land_sql_table(settings, REGISTERED_USERS)
    assert "s3cret" not in str(error.value)


def test_exactly_once_under_sigkill(source):
    """Kill the extractor at 20+ random points while the source keeps changing; every row version lands once."""
    settings, conn, dialect = source
    env = {
        **os.environ,
        "FITLAKE_DATA_ROOT": str(settings.data_root),
        "FITLAKE_SOURCE_ODBC": settings.source_odbc,
        "FITLAKE_LANDING_ROOT": str(settings.landing_root),
        "FITLAKE_SQL_FETCH_ROWS": "500",
        "FITLAKE_SQL_OVERLAP_SECONDS": "150",
        "FITLAKE_LANDING_FILE_MAX_BYTES": "8192",
        "PYTHONPATH": REPO_ROOT,
    }
    command = [sys.executable, "-m", "ingestion", "land", "sql"]
    rng = random.Random(7)
    next_user, open_visits, kills, clock = 1, [], 0, T0
    typical_run = 0.6  # seconds; tracks how long a run that was not killed took, to aim the kills inside it
    while kills < 20:
        clock += timedelta(minutes=1)
        batch = users(range(next_user, next_user + 4000), clock)
        azure_sql.insert_rows(conn, dialect, "dbo", REGISTERED_USERS, batch)
        next_user += 4000
        logins = [
            (
                f"0a:1b:2c:3d:{rng.randrange(256):02x}:{rng.randrange(256):02x}",
                rng.randrange(1, 9),
                clock + timedelta(microseconds=rng.randrange(10**6)),
                None,
                clock,
            )
            for _ in range(200)
        ]
        logins = list({(m, g, li): (m, g, li, lo, mo) for m, g, li, lo, mo in logins}.values())
        azure_sql.insert_rows(conn, dialect, "dbo", GYM_LOGINS, logins)
        closing = open_visits[: len(open_visits) // 2]
        open_visits = open_visits[len(open_visits) // 2 :] + [row[:3] for row in logins]
        azure_sql.set_gym_logout(
            conn, dialect, "dbo", [(li + timedelta(minutes=40), clock, m, g, li) for m, g, li in closing]
        )
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.15, typical_run))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            sql_rows(settings.landing_root, "gym_logins")  # what is visible is complete
        else:
            assert process.returncode == 0, process.stderr.read()
            typical_run = max(0.3, time.monotonic() - started)
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    landed_users = landed_keys(settings, "registered_users", ["user_id"])
    assert landed_users == Counter({(i,): 1 for i in range(1, next_user)})
    cursor = conn.cursor()
    cursor.execute(f"SELECT mac_address, gym, login, logout FROM {dialect.table('dbo', 'gym_logins')}")
    final_state = Counter()
    for mac, gym, login, logout in cursor.fetchall():
        if isinstance(login, str):
            login, logout = datetime.fromisoformat(login), logout and datetime.fromisoformat(logout)
        final_state[(mac, gym, login, logout)] += 1
    landed_versions = Counter(
        (r["mac_address"], r["gym"], r["login"], r["logout"], r["modified_at"])
        for r in sql_rows(settings.landing_root, "gym_logins")
    )
    assert max(landed_versions.values()) == 1, "a row version landed twice"
    landed_states = {key[:4] for key in landed_versions}
    assert set(final_state) <= landed_states, "the latest version of a row is missing"
    assert not temp_files(settings.landing_root)
