"""Faults in the middle of a batch, each ending with every message and row version landed exactly once.

- the Kafka broker is SIGKILLed while a landing runs, on both brokers (Tansu on S3 storage, so that it
  keeps its log like Apache Kafka does), and comes back within the stall timeout, or stays away past it;
- PostgreSQL is stopped with ``pg_ctl stop -m immediate`` while a table is extracted;
- the landing zone's filesystem (a small tmpfs) fills up;
- two landers are started on the same entity at once.

The landers run as the CLI runs them (``python -m ingestion land ...`` in a subprocess), so the
messages and exit codes checked are the ones an operator sees.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ingestion import azure_sql
from ingestion.errors import LandingError, SourceUnreachable
from ingestion.kafka import ensure_topics, make_producer
from ingestion.source_tables import REGISTERED_USERS
from ingestion.stack import ensure_source_tables
from tests.support.landing import kafka_rows, sql_rows, temp_files

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- helpers ----------------------------------------------------------------------------------


def cli_env(settings, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITLAKE_")}
    env.update(
        {
            "FITLAKE_DATA_ROOT": str(settings.data_root),
            "FITLAKE_LANDING_ROOT": str(settings.landing_root),
            "FITLAKE_SOURCE_ODBC": settings.source_odbc,
            "FITLAKE_SOURCE_SCHEMA": settings.source_schema,
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    if settings.kafka_bootstrap:
        env["FITLAKE_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_lander(env: dict, source: str, entity: str) -> subprocess.Popen:
    flag = "--topic" if source == "kafka" else "--table"
    return subprocess.Popen(
        [sys.executable, "-m", "ingestion", "land", source, flag, entity],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def land_until_done(env: dict, source: str, entity: str, runs: int = 6) -> str:
    """Rerun the lander until it is caught up; every run must succeed or fail with a clear message.

    A successful Kafka run may stop short of the topic's end (a batch is bounded by the ends its probe
    saw), so Kafka is done when a successful run lands no new file; SQL when a run succeeds.
    """
    logs, landed = [], _landed_files(env, source, entity)
    for _ in range(runs):
        code, err = finish(start_lander(env, source, entity))
        assert_clear(code, err)
        logs.append(err)
        before, landed = landed, _landed_files(env, source, entity)
        if code == 0 and (source == "sql" or landed == before):
            return "\n".join(logs)
    raise AssertionError(f"{source}:{entity} was not caught up after {runs} runs: {err}")


def _landed_files(env: dict, source: str, entity: str) -> set[str]:
    folder = Path(env["FITLAKE_LANDING_ROOT"]) / source / entity
    return {str(path) for path in folder.rglob("*.parquet")}


def assert_clear(code: int, err: str) -> None:
    """Success, or an exit code of ours with a message that says what failed: never a traceback."""
    assert "Traceback" not in err, err
    if code:
        assert code in (SourceUnreachable.exit_code, LandingError.exit_code), (code, err)
        assert "error: " in err, err


def wait_for(condition, what: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the lander ended ({process.returncode}) before {what}: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def produce(settings, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    """Produce the values; returns the (partition, offset) of every delivered message."""
    producer = make_producer(settings)
    delivered, failed = [], []

    def on_delivery(error, message):
        (failed if error else delivered).append(error or (message.partition(), message.offset()))

    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, key=str(i % 97), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0 and not failed, failed[:3]
    return delivered


def readings(n: int, start: int = 0) -> list[bytes]:
    return [
        json.dumps({"device_id": i % 50, "time": 1_700_000_000 + i + 0.25, "heartrate": 60 + i % 90}).encode()
        for i in range(start, start + n)
    ]


def landed_messages(landing: Path, topic: str) -> Counter:
    return Counter((r["partition"], r["offset"]) for r in kafka_rows(landing, topic))


def assert_every_message_once(landing: Path, topic: str, delivered: list[tuple[int, int]]) -> None:
    landed = landed_messages(landing, topic)
    assert max(landed.values()) == 1, "a message landed twice"
    assert set(landed) == set(delivered), f"{len(set(delivered) - set(landed))} message(s) missing"
    assert not temp_files(landing)


def broker_holds(bootstrap: str, topic: str, partitions: int = 3) -> set[tuple[int, int]]:
    """Every (partition, offset) the broker serves now, read to the end by a plain consumer."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    held, at_end, deadline = set(), set(), time.monotonic() + 120
    while len(at_end) < partitions and time.monotonic() < deadline:
        for message in consumer.consume(10000, timeout=1.0):
            if message.error():
                at_end.add(message.partition())
            else:
                held.add((message.partition(), message.offset()))
    consumer.close()
    return held


def assert_landed_what_the_broker_holds(broker, landing: Path, topic: str, delivered: list, log: str = "") -> None:
    """Exactly once against the broker's log after its restart, and that log against what was acknowledged.

    Apache Kafka keeps every acknowledged message through a SIGKILL (the page cache survives the process).
    Tansu on S3 may not: if acknowledged messages are gone from its log after the restart, the lander
    cannot land them, and the assertion says so instead of blaming the lander.
    """
    held = broker_holds(broker.bootstrap, topic)
    landed = landed_messages(landing, topic)
    assert max(landed.values()) == 1, "a message landed twice"
    missing = sorted(held ^ set(landed))
    lines = "\n".join(line for line in log.splitlines() if "ingestion" in line)
    assert set(landed) == held, f"landed {len(landed)}, the broker holds {len(held)}: {missing[:5]}\n{lines}"
    lost = set(delivered) - held
    assert not lost, (
        f"the broker lost {len(lost)} acknowledged message(s) in the crash (e.g. {sorted(lost)[:5]}); "
        "every message it still holds landed exactly once"
    )
    assert not temp_files(landing)


def kafka_files(landing: Path, topic: str) -> list[Path]:
    return list((landing / "kafka" / topic).glob("partition=*/*.parquet"))


# --- the Kafka broker crashes -----------------------------------------------------------------


@pytest.fixture(params=["tansu", "apache-kafka"])
def crashable_broker(request, tmp_path):
    """A broker of its own (the session's are shared): kill() is a SIGKILL, restart() brings it back with its data."""
    if request.param == "tansu":
        from tests.support.durable_tansu import durable_tansu

        with durable_tansu(tmp_path / "tansu") as broker:
            yield broker
    else:
        from tests.support.real_kafka import RealKafkaBroker

        broker = RealKafkaBroker(tmp_path / "kraft")
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


# Fetches and the consumer's prefetch far smaller than the topic (one fetch could otherwise bring the
# whole topic), so the landing still needs the broker when it is killed.
SMALL_PREFETCH = {
    "FITLAKE_KAFKA_OPT_FETCH_MAX_BYTES": 64 * 1024,
    "FITLAKE_KAFKA_OPT_MESSAGE_MAX_BYTES": 64 * 1024,
    "FITLAKE_KAFKA_OPT_MAX_PARTITION_FETCH_BYTES": 32 * 1024,
    "FITLAKE_KAFKA_OPT_QUEUED_MAX_MESSAGES_KBYTES": 256,
    "FITLAKE_KAFKA_OPT_QUEUED_MIN_MESSAGES": 1000,
}


def _busy_topic(settings, messages: int) -> tuple[str, list]:
    topic = f"crash_{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=3)
    return topic, produce(settings, topic, readings(messages))


def test_broker_killed_mid_landing_and_back_within_the_stall_timeout(crashable_broker, make_settings):
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=crashable_broker.bootstrap)
    topic, delivered = _busy_topic(settings, 150_000)
    env = cli_env(settings, FITLAKE_LANDING_FILE_MAX_BYTES=32 * 1024, FITLAKE_KAFKA_STALL_SECONDS=90, **SMALL_PREFETCH)
    lander = start_lander(env, "kafka", topic)
    wait_for(lambda: kafka_files(settings.landing_root, topic), "the first file landed", lander)
    crashable_broker.kill()
    assert lander.poll() is None, "the landing ended before the broker was killed: give it more to do"
    time.sleep(2)
    crashable_broker.restart()
    code, err = finish(lander)
    assert code == 0, err  # the same run waited for the broker and finished its batch
    # A batch is bounded by the ends its probe saw in PROBE_SECONDS (on a loaded machine with these small
    # fetches, short of the topic's end): the next run lands the rest.
    logs = land_until_done(env, "kafka", topic)
    assert_landed_what_the_broker_holds(crashable_broker, settings.landing_root, topic, delivered, err + logs)


def test_broker_down_past_the_stall_timeout_fails_clearly_and_the_next_run_completes(crashable_broker, make_settings):
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=crashable_broker.bootstrap)
    topic, delivered = _busy_topic(settings, 150_000)
    env = cli_env(
        settings,
        FITLAKE_LANDING_FILE_MAX_BYTES=32 * 1024,
        FITLAKE_KAFKA_STALL_SECONDS=4,
        FITLAKE_CONNECT_RETRIES=2,
        FITLAKE_KAFKA_TIMEOUT_SECONDS=3,
        **SMALL_PREFETCH,
    )
    lander = start_lander(env, "kafka", topic)
    wait_for(lambda: kafka_files(settings.landing_root, topic), "the first file landed", lander)
    crashable_broker.kill()
    assert lander.poll() is None, "the landing ended before the broker was killed: give it more to do"
    code, err = finish(lander, timeout=120)
    assert code == SourceUnreachable.exit_code, err
    assert f"error: {topic}: no message for 4s" in err and "rerun to continue" in err, err
    assert_clear(code, err)
    partial = sum(landed_messages(settings.landing_root, topic).values())
    assert 0 < partial < len(delivered)  # complete files stayed, nothing half-written is visible
    assert not temp_files(settings.landing_root) or code  # a killed run's temp files go on the next run

    crashable_broker.restart()
    logs = land_until_done(cli_env(settings, FITLAKE_KAFKA_STALL_SECONDS=90), "kafka", topic)
    assert_landed_what_the_broker_holds(crashable_broker, settings.landing_root, topic, delivered, err + logs)


def test_a_topic_created_again_behind_the_landing_zone_is_refused(make_settings, tmp_path):
    """The embedded broker keeps messages in memory: restarted, its topics start again at offset 0."""
    from ingestion.land_kafka import land_kafka_topic
    from ingestion.stack import start_broker, stop_process

    broker = start_broker(tmp_path / "tansu")
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=broker.bootstrap)
    try:
        ensure_topics(settings, ["bpm"], partitions=1)
        produce(settings, "bpm", readings(500))
        assert land_kafka_topic(settings, "bpm").rows == 500
        stop_process(broker.pid)
        broker = start_broker(tmp_path / "tansu", port=port)
        ensure_topics(settings, ["bpm"], partitions=1)
        produce(settings, "bpm", readings(20))  # offsets 0..19 again
        with pytest.raises(LandingError, match=r"bpm\[0\]: the landing zone continues at offset 500") as error:
            land_kafka_topic(settings, "bpm")
        assert "move landing/kafka/bpm away" in str(error.value)
        assert sum(landed_messages(settings.landing_root, "bpm").values()) == 500  # nothing more landed
    finally:
        stop_process(broker.pid)


# --- PostgreSQL stops mid-extract ---------------------------------------------------------------


def _fill_users(cluster_odbc: str, first: int, last: int, day: int) -> None:
    """Rows made by the server itself (generate_series): 100,000s of them in a second."""
    import pyodbc

    conn = pyodbc.connect(cluster_odbc, autocommit=True)
    try:
        conn.execute(
            'INSERT INTO "dbo"."registered_users" SELECT g, 300000 + g, '
            "'0a:1b:' || lpad(to_hex(g), 8, '0'), timestamp '2026-01-01' + g * interval '1 second', "
            f"timestamp '2026-01-{day:02d}' + g * interval '1 millisecond' FROM generate_series({first}, {last}) g"
        )
    finally:
        conn.close()


def _landed_user_ids(landing: Path) -> Counter:
    return Counter(r["user_id"] for r in sql_rows(landing, "registered_users"))


def _staged(landing: Path) -> list[Path]:
    return [p for p in (landing / "_staging").glob("sql-registered_users-*/*") if p.is_file()]


def test_postgresql_stopped_mid_extract(make_settings):
    """`pg_ctl stop -m immediate` mid-extract: reread when it is back soon, a clear error when it is not."""
    from tests.support.postgres import postgres_cluster

    with postgres_cluster() as cluster:
        # UseDeclareFetch streams the rows from the server in fetches, as Azure SQL's driver does
        # (psqlODBC otherwise reads the whole result at execute, and a stop mid-fetch changes nothing).
        odbc = cluster.odbc + "UseDeclareFetch=1;Fetch=2000;"
        settings = make_settings(FITLAKE_SOURCE_ODBC=odbc)
        ensure_source_tables(settings)
        _fill_users(odbc, 1, 150_000, day=2)
        env = cli_env(settings, FITLAKE_SQL_FETCH_ROWS=2000, FITLAKE_LANDING_FILE_MAX_BYTES=64 * 1024)

        # back within the retry window: the same run reads the batch again and lands it
        lander = start_lander({**env, "FITLAKE_CONNECT_RETRIES": "6"}, "sql", "registered_users")
        wait_for(lambda: _staged(settings.landing_root), "the first rows staged", lander)
        cluster.stop("immediate")
        assert lander.poll() is None, "the extract ended before the database stopped: give it more rows"
        time.sleep(0.5)
        cluster.start()
        code, err = finish(lander)
        assert code == 0, err
        assert "the SQL source went away mid-extract" in err and "extracting again" in err, err
        assert _landed_user_ids(settings.landing_root) == Counter({i: 1 for i in range(1, 150_001)})

        # away for good: a clear error, nothing partial published; the next run lands it all
        _fill_users(odbc, 150_001, 250_000, day=9)
        lander = start_lander({**env, "FITLAKE_CONNECT_RETRIES": "2"}, "sql", "registered_users")
        wait_for(lambda: _staged(settings.landing_root), "the new rows staged", lander)
        cluster.stop("immediate")
        code, err = finish(lander)
        assert code == SourceUnreachable.exit_code, err
        assert_clear(code, err)
        assert "cannot connect to the SQL source" in err or "went away while registered_users" in err, err
        assert len(_landed_user_ids(settings.landing_root)) == 150_000  # the failed batch is not visible
        cluster.start()
        land_until_done(env, "sql", "registered_users")
        assert _landed_user_ids(settings.landing_root) == Counter({i: 1 for i in range(1, 250_001)})
        assert not _staged(settings.landing_root) and not temp_files(settings.landing_root)


# --- the landing disk fills up ------------------------------------------------------------------


@pytest.fixture
def small_landing_disk(tmp_path):
    """A 4 MiB tmpfs as the landing root (root only, as here and in CI); grow(size) makes room."""
    mount_point = tmp_path / "landing"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "fitlake-test", str(mount_point)], check=True)

    def grow(size: str = "256m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount_point)], check=True)

    try:
        yield mount_point, grow
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _incompressible(n: int, size: int = 300) -> list[bytes]:
    rng = random.Random(5)
    return [json.dumps({"device_id": i, "noise": rng.randbytes(size // 2).hex()}).encode() for i in range(n)]


def test_kafka_landing_on_a_full_disk(small_landing_disk, make_settings, embedded_kafka):
    landing, grow = small_landing_disk
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=embedded_kafka, FITLAKE_LANDING_ROOT=landing)
    topic = f"full_{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=3)
    delivered = produce(settings, topic, _incompressible(60_000))  # ~10 MB of Parquet
    env = cli_env(settings, FITLAKE_LANDING_FILE_MAX_BYTES=128 * 1024)
    code, err = finish(start_lander(env, "kafka", topic))
    assert code == LandingError.exit_code and "error: the landing disk is full" in err, err
    assert_clear(code, err)
    landed = landed_messages(landing, topic)  # whatever is visible reads back whole
    assert 0 < len(landed) < len(delivered) and not temp_files(landing)
    grow()
    land_until_done(env, "kafka", topic)
    assert_every_message_once(landing, topic, delivered)


def test_sql_extract_on_a_full_disk(small_landing_disk, make_settings):
    landing, grow = small_landing_disk
    settings = make_settings(FITLAKE_LANDING_ROOT=landing)
    ensure_source_tables(settings)
    rng = random.Random(9)
    conn = azure_sql.connect_source(settings)
    try:
        from datetime import datetime, timedelta

        base = datetime(2026, 2, 1)
        rows = [
            (
                i,
                rng.getrandbits(62),
                rng.randbytes(8).hex(),
                base + timedelta(microseconds=rng.getrandbits(40)),
                base,
            )
            for i in range(1, 300_001)
        ]
        azure_sql.insert_rows(conn, azure_sql.source_dialect(settings), "dbo", REGISTERED_USERS, rows)
    finally:
        conn.close()
    env = cli_env(settings, FITLAKE_LANDING_FILE_MAX_BYTES=128 * 1024, FITLAKE_SQL_FETCH_ROWS=5000)
    code, err = finish(start_lander(env, "sql", "registered_users"))
    assert code == LandingError.exit_code and "error: the landing disk is full" in err, err
    assert_clear(code, err)
    assert not sql_rows(landing, "registered_users") and not _staged(landing)  # no batch is half visible
    grow()
    land_until_done(env, "sql", "registered_users")
    assert _landed_user_ids(landing) == Counter({i: 1 for i in range(1, 300_001)})


# --- two landers on one entity ------------------------------------------------------------------


def test_two_kafka_landers_on_one_topic(make_settings, embedded_kafka):
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=embedded_kafka)
    topic = f"twice_{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=3)
    delivered = produce(settings, topic, readings(200_000))
    env = cli_env(settings, FITLAKE_LANDING_FILE_MAX_BYTES=32 * 1024, **SMALL_PREFETCH)  # a slow first landing
    first = start_lander(env, "kafka", topic)
    wait_for(lambda: kafka_files(settings.landing_root, topic), "the first file landed", first)
    code, err = finish(start_lander(env, "kafka", topic), timeout=60)
    assert first.poll() is None, "the first landing ended before the second started: give it more to do"
    assert code == LandingError.exit_code and f"another lander is already landing kafka-{topic}" in err, err
    assert finish(first)[0] == 0
    assert_every_message_once(settings.landing_root, topic, delivered)  # the same as one run
    assert finish(start_lander(env, "kafka", topic))[0] == 0
    assert_every_message_once(settings.landing_root, topic, delivered)


def test_two_sql_landers_on_one_table(make_settings):
    settings = make_settings()
    ensure_source_tables(settings)
    conn = azure_sql.connect_source(settings)
    try:
        from datetime import datetime, timedelta

        base = datetime(2026, 3, 1)
        rows = [(i, 7 * i, f"0a:{i:08x}", base, base + timedelta(microseconds=i)) for i in range(1, 150_001)]
        azure_sql.insert_rows(conn, azure_sql.source_dialect(settings), "dbo", REGISTERED_USERS, rows)
    finally:
        conn.close()
    env = cli_env(settings, FITLAKE_LANDING_FILE_MAX_BYTES=32 * 1024, FITLAKE_SQL_FETCH_ROWS=2000)
    first = start_lander(env, "sql", "registered_users")
    wait_for(lambda: _staged(settings.landing_root), "the first rows staged", first)
    code, err = finish(start_lander(env, "sql", "registered_users"), timeout=60)
    assert first.poll() is None, "the first extract ended before the second started: give it more rows"
    assert code == LandingError.exit_code and "another lander is already landing sql-registered_users" in err, err
    assert finish(first)[0] == 0
    assert _landed_user_ids(settings.landing_root) == Counter({i: 1 for i in range(1, 150_001)})
    assert finish(start_lander(env, "sql", "registered_users"))[0] == 0
    assert _landed_user_ids(settings.landing_root) == Counter({i: 1 for i in range(1, 150_001)})
