"""Landing throughput beside bare client loops over the same data, on both brokers and both ODBC drivers.

    python tests/bench/bench_ingestion.py [--messages N] [--rows N] [--rounds R] [--only kafka|sql]

Figures, never assertions. Every measurement is its own process, as a landing task is:

* Kafka, on the embedded Tansu broker and on a real Apache Kafka (KRaft, from Apache's jars; or
  FITLAKE_BENCH_KAFKA_BOOTSTRAP as well): N heart-rate messages on a 3-partition topic, read by a bare
  confluent-kafka assign + consume loop (a process that imports only confluent_kafka, with the landers'
  consumer settings) and by `python -m ingestion land kafka` into a fresh landing zone.
* SQL, through the SQLite3 and the PostgreSQL ODBC drivers: N registered_users rows, read by a bare
  pyodbc `fetchmany` loop (the same SELECT, the same fetch size) and by `python -m ingestion land sql`.

Bare and landing runs alternate for R rounds; the table shows the best of each (load on a shared
machine only ever slows a run down) and the ratio of the two, with CPU seconds and peak memory of the
process. The load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from ingestion import azure_sql  # noqa: E402
from ingestion.config import load_settings  # noqa: E402
from ingestion.kafka import consumer_config, ensure_topics, make_producer  # noqa: E402
from ingestion.source_tables import REGISTERED_USERS  # noqa: E402
from ingestion.stack import ensure_source_tables, start_broker, stop_process  # noqa: E402

PARTITIONS = 3

# The bare loops: what a data engineer would write first, with nothing of ours imported.
BARE_KAFKA = """
import json, sys, time
from confluent_kafka import Consumer, KafkaError, TopicPartition
config, topic, partitions = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
consumer = Consumer(config)
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
print(json.dumps({"rows": count, "seconds": time.perf_counter() - started}))
consumer.close()
"""
BARE_SQL = """
import json, sys, time
import pyodbc
connection_string, sql, fetch_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()  # from connect to close, as the lander's own figure
conn = pyodbc.connect(connection_string, autocommit=True)
cursor = conn.cursor()
cursor.execute(sql)
count = 0
while batch := cursor.fetchmany(fetch_rows):
    count += len(batch)
conn.close()  # the driver frees its result set: part of the read, for the lander too
print(json.dumps({"rows": count, "seconds": time.perf_counter() - started}))
"""


@dataclass
class Run:
    rows: int
    seconds: float  # the work itself, without interpreter start and imports
    cpu: float  # user + system seconds of the whole process
    peak_mib: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def run_process(command: list[str], env: dict | None = None) -> tuple[object, float, float]:
    """Run a measurement process that ends its output with JSON; returns (that JSON, CPU seconds, peak MiB)."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
        out = process.stdout.read()
        # wait4, not wait: it returns this child's own CPU time and peak memory
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command[:4])}... failed ({process.returncode}):\n{errors.read()[-3000:]}")
    lines = out.strip().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(("{", "[")))  # after any summary lines
    return json.loads("\n".join(lines[first:])), usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def land_command(source: str, entity: str) -> list[str]:
    flag = "--topic" if source == "kafka" else "--table"
    return [sys.executable, "-m", "ingestion", "land", source, flag, entity, "--json"]


def landing_run(source: str, entity: str, env: dict) -> Run:
    with tempfile.TemporaryDirectory(prefix="fitlake-bench-landing-") as landing:
        result, cpu, peak = run_process(
            land_command(source, entity),
            {**env, "FITLAKE_LANDING_ROOT": landing, "PYTHONPATH": str(REPO_ROOT)},
        )
    [summary] = result  # `--json`: the run summaries, one per entity
    return Run(summary["rows"], summary["seconds"], cpu, peak)


def alternate(bare, land, rounds: int) -> tuple[list[Run], list[Run]]:
    bares, lands = [], []
    for _ in range(rounds):
        bares.append(bare())
        lands.append(land())
    return bares, lands


# --- Kafka ------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def kafka_brokers(work: Path):
    """(name, bootstrap) of every broker to measure: Tansu, Apache Kafka, and an external one if given."""
    from tests.support.real_kafka import start_real_kafka

    tansu = start_broker(work / "tansu")
    try:
        with start_real_kafka(work / "kraft") as kafka:
            brokers = [("Tansu (embedded)", tansu.bootstrap), ("Apache Kafka 4.1", kafka.bootstrap)]
            external = os.environ.get("FITLAKE_BENCH_KAFKA_BOOTSTRAP")
            if external:
                brokers.append((f"external {external}", external))
            yield brokers
    finally:
        stop_process(tansu.pid)


def bench_kafka(work: Path, name: str, bootstrap: str, messages: int, rounds: int) -> tuple[str, list, list]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FITLAKE_")},
        "FITLAKE_DATA_ROOT": str(work / "data"),
        "FITLAKE_KAFKA_BOOTSTRAP": bootstrap,
    }
    settings = load_settings(env)
    topic = f"bench_bpm_{uuid.uuid4().hex[:6]}"
    ensure_topics(settings, [topic], partitions=PARTITIONS)
    started = time.perf_counter()
    produce_bpm(settings, topic, messages)
    print(f"  {name}: produced {messages:,} messages in {time.perf_counter() - started:.1f}s", flush=True)

    def bare() -> Run:
        config = consumer_config(settings, **{"group.id": f"bench-{uuid.uuid4().hex}"})
        result, cpu, peak = run_process([sys.executable, "-c", BARE_KAFKA, json.dumps(config), topic, str(PARTITIONS)])
        return Run(result["rows"], result["seconds"], cpu, peak)

    bares, lands = alternate(bare, lambda: landing_run("kafka", topic, env), rounds)
    return f"kafka  {name}", bares, lands


# --- SQL --------------------------------------------------------------------------------------


def insert_users(settings, rows: int) -> None:
    ensure_source_tables(settings)
    dialect = azure_sql.source_dialect(settings)
    conn = azure_sql.connect_source(settings)
    base = datetime(2026, 1, 1)
    chunk = 50_000
    try:
        for start in range(0, rows, chunk):
            azure_sql.insert_rows(
                conn,
                dialect,
                settings.source_schema,
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
    finally:
        conn.close()


@contextlib.contextmanager
def sql_sources(work: Path):
    """(name, environment) of every SQL source to measure: the SQLite stand-in and PostgreSQL."""
    from tests.support.postgres import throwaway_postgres

    sqlite = {"FITLAKE_DATA_ROOT": str(work / "sqlite")}
    with throwaway_postgres() as postgres:
        yield [
            ("SQLite3 ODBC", sqlite),
            ("PostgreSQL ODBC", {"FITLAKE_DATA_ROOT": str(work / "pg"), "FITLAKE_SOURCE_ODBC": postgres}),
        ]


def bench_sql(name: str, source_env: dict, rows: int, rounds: int) -> tuple[str, list, list]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FITLAKE_")}, **source_env}
    settings = load_settings(env)
    started = time.perf_counter()
    insert_users(settings, rows)
    print(f"  {name}: inserted {rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
    dialect = azure_sql.source_dialect(settings)
    select = ", ".join(dialect.quote(c) for c in REGISTERED_USERS.column_names)
    sql = f"SELECT {select} FROM {dialect.table(settings.source_schema, REGISTERED_USERS.name)}"

    def bare() -> Run:
        result, cpu, peak = run_process(
            [sys.executable, "-c", BARE_SQL, settings.source_odbc, sql, str(settings.sql_fetch_rows)]
        )
        return Run(result["rows"], result["seconds"], cpu, peak)

    bares, lands = alternate(bare, lambda: landing_run("sql", REGISTERED_USERS.name, env), rounds)
    return f"sql    {name}", bares, lands


# --- report -----------------------------------------------------------------------------------


def report(results: list[tuple[str, list[Run], list[Run]]]) -> None:
    print()
    print(
        f"{'':26} {'bare rows/s':>12} {'landing rows/s':>15} {'ratio':>6}   {'per-round ratios':<22} "
        f"{'CPU s bare/land':>16} {'peak MiB bare/land':>19}"
    )
    for label, bares, lands in results:
        bare, land = min(bares, key=lambda r: r.seconds), min(lands, key=lambda r: r.seconds)
        rounds = " ".join(f"{lr.rate / br.rate:.2f}" for br, lr in zip(bares, lands, strict=True))
        print(
            f"{label:26} {bare.rate:>12,.0f} {land.rate:>15,.0f} {land.rate / bare.rate:>5.2f}x   {rounds:<22} "
            f"{bare.cpu:>7.2f} / {land.cpu:<6.2f} {bare.peak_mib:>8.0f} / {land.peak_mib:<6.0f}"
        )
        if bare.rows != land.rows:
            print(f"  note: {label}: bare read {bare.rows:,} rows, landing {land.rows:,}")
    print(
        f"goal: landing >= 0.8x bare; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["kafka", "sql"])
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="fitlake-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "kafka"):
            with kafka_brokers(work) as brokers:
                for name, bootstrap in brokers:
                    results.append(bench_kafka(work / name.split()[0], name, bootstrap, args.messages, args.rounds))
        if args.only in (None, "sql"):
            with sql_sources(work) as sources:
                for name, env in sources:
                    results.append(bench_sql(name, env, args.rows, args.rounds))
    report(results)


if __name__ == "__main__":
    main()
