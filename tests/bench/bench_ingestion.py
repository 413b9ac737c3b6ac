"""Landing throughput beside the bare client loops over the same data (figures, never assertions).

    python tests/bench/bench_ingestion.py [--messages N] [--rows N]

Kafka: N heart-rate messages on a 3-partition topic of the embedded broker (or
FITLAKE_BENCH_KAFKA_BOOTSTRAP), read once by a bare confluent-kafka assign +
consume loop and once by `land_kafka_topic`. SQL: N registered_users rows in
the SQLite stand-in, read once by a bare `fetchmany` loop and once by
`land_sql_table`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402

from ingestion import azure_sql  # noqa: E402
from ingestion.config import load_settings  # noqa: E402
from ingestion.kafka import ensure_topics, make_producer  # noqa: E402
from ingestion.land_kafka import land_kafka_topic  # noqa: E402
from ingestion.land_sql import land_sql_table  # noqa: E402
from ingestion.source_tables import REGISTERED_USERS  # noqa: E402
from ingestion.stack import ensure_source_tables, start_broker, stop_process  # noqa: E402


def produce_bpm(settings, topic: str, count: int) -> None:
    producer = make_producer(settings, **{"linger.ms": 50, "compression.type": "lz4"})
    for i in range(count):
        value = json.dumps(
            {"device_id": 300000 + i % 500, "time": 1_700_000_000 + i // 500 + 0.25, "heartrate": 60.0 + i % 90}
        )
        while True:
            try:
                producer.produce(topic, key=str(300000 + i % 500), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit("not every benchmark message was delivered")


def bare_consume(bootstrap: str, topic: str, partitions: int) -> tuple[int, float]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        }
    )
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    count, at_eof = 0, set()
    while len(at_eof) < partitions:
        for message in consumer.consume(10000, timeout=1.0):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(message.partition())
                continue
            message.value()
            count += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return count, elapsed


def bench_kafka(work: Path, messages: int) -> None:
    import os

    external = os.environ.get("FITLAKE_BENCH_KAFKA_BOOTSTRAP")
    broker = None if external else start_broker(work / "broker")
    bootstrap = external or broker.bootstrap
    try:
        settings = load_settings({"FITLAKE_DATA_ROOT": str(work / "data"), "FITLAKE_KAFKA_BOOTSTRAP": bootstrap})
        topic = f"bench_bpm_{uuid.uuid4().hex[:6]}"
        ensure_topics(settings, [topic], partitions=3)
        t = time.perf_counter()
        produce_bpm(settings, topic, messages)
        print(
            f"kafka: produced {messages:,} messages in {time.perf_counter() - t:.1f}s "
            f"({'external ' + bootstrap if external else 'embedded Tansu broker'})"
        )
        # The bare loop runs before and after the lander; the faster run is the fair baseline.
        bare_count, bare_seconds = bare_consume(bootstrap, topic, 3)
        summary = land_kafka_topic(settings, topic)
        bare_seconds = min(bare_seconds, bare_consume(bootstrap, topic, 3)[1])
        bare_rate = bare_count / bare_seconds
        land_rate = summary.rows / summary.seconds
        print(f"kafka: bare consume loop   {bare_count:>10,} msgs {bare_seconds:6.2f}s {bare_rate:>12,.0f} msgs/s")
        print(
            f"kafka: land_kafka_topic    {summary.rows:>10,} msgs {summary.seconds:6.2f}s {land_rate:>12,.0f} msgs/s "
            f"({summary.files} files, {summary.bytes / 1e6:.1f} MB)"
        )
        print(f"kafka: landing / bare = {land_rate / bare_rate:.2f}x   (goal >= 0.5x and >= 200,000 msgs/s)")
    finally:
        if broker:
            stop_process(broker.pid)


def bench_sql(work: Path, rows: int) -> None:
    settings = load_settings({"FITLAKE_DATA_ROOT": str(work / "sql")})
    ensure_source_tables(settings)
    dialect = azure_sql.source_dialect(settings)
    conn = azure_sql.connect_source(settings)
    base = datetime(2026, 1, 1)
    t = time.perf_counter()
    chunk = 50_000
    for start in range(0, rows, chunk):
        azure_sql.insert_rows(
            conn,
            dialect,
            "dbo",
            REGISTERED_USERS,
            [
                (
                    i,
                    300000 + i,
                    f"0a:1b:2c:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                    base + timedelta(seconds=i, microseconds=i % 997),
                    base + timedelta(seconds=i, microseconds=i % 991),
                )
                for i in range(start, min(rows, start + chunk))
            ],
        )
    print(f"sql: inserted {rows:,} rows into the SQLite stand-in in {time.perf_counter() - t:.1f}s")
    cursor = conn.cursor()
    started = time.perf_counter()
    cursor.execute("SELECT user_id, device_id, mac_address, registration_timestamp, modified_at FROM registered_users")
    count = 0
    while batch := cursor.fetchmany(settings.sql_fetch_rows):
        count += len(batch)
    bare_seconds = time.perf_counter() - started
    conn.close()
    summary = land_sql_table(settings, REGISTERED_USERS)
    bare_rate, land_rate = count / bare_seconds, summary.rows / summary.seconds
    print(f"sql: bare fetchmany loop   {count:>10,} rows {bare_seconds:6.2f}s {bare_rate:>12,.0f} rows/s")
    print(
        f"sql: land_sql_table        {summary.rows:>10,} rows {summary.seconds:6.2f}s {land_rate:>12,.0f} rows/s "
        f"({summary.files} files, {summary.bytes / 1e6:.1f} MB)"
    )
    print(f"sql: extraction / bare = {land_rate / bare_rate:.2f}x   (goal >= 0.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fitlake-bench-") as tmp:
        bench_kafka(Path(tmp), args.messages)
        bench_sql(Path(tmp), args.rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
