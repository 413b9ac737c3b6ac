"""Landing-zone layout and the state kept in it.

The landing zone is its own source of truth: a Kafka file's name carries the
offset range it holds, and every SQL batch directory carries a ``_commit.json``
with the watermark reached. Both become visible in one atomic rename, so data
and state can never disagree after a crash.

Layout under the landing root::

    sql/<table>/batch=<seq>-<yyyymmddTHHMMSSZ>/part-00000.parquet + _commit.json
    kafka/<topic>/partition=<p>/<topic>-<p>-<first offset>-<last offset>.parquet
    _staging/   work in progress, never read downstream
    _locks/     one lock file per table or topic
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingestion.errors import LandingError
from ingestion.parquet_sink import disk_full_is_clear, fsync_directory

COMMIT_FILE = "_commit.json"
_KAFKA_FILE = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$")
_SQL_BATCH = re.compile(r"^batch=(?P<seq>\d{6,})-(?P<stamp>\d{8}T\d{6}Z)$")


def sql_table_dir(landing_root: Path, table: str) -> Path:
    return landing_root / "sql" / table


def kafka_partition_dir(landing_root: Path, topic: str, partition: int) -> Path:
    return landing_root / "kafka" / topic / f"partition={partition}"


def kafka_file_name(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    return f"{topic}-{partition}-{first_offset:020d}-{last_offset:020d}.parquet"


def staging_dir(landing_root: Path) -> Path:
    return landing_root / "_staging"


@contextmanager
def landing_lock(landing_root: Path, name: str) -> Iterator[None]:
    """Exclusive per-entity lock; the kernel drops it if the holder is killed."""
    lock_dir = landing_root / "_locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LandingError(
                f"another lander is already landing {name} into {landing_root}; "
                "wait for it to finish (runs of the same entity never overlap)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomic(path: Path, payload: dict) -> None:
    temp = path.with_name(f".tmp-{path.name}")
    with disk_full_is_clear(path):
        with open(temp, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        fsync_directory(path.parent)


# --- Kafka ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandedKafkaFile:
    path: Path
    partition: int
    first_offset: int
    last_offset: int


def landed_kafka_files(landing_root: Path, topic: str) -> list[LandedKafkaFile]:
    files = []
    topic_dir = landing_root / "kafka" / topic
    for path in topic_dir.glob("partition=*/*.parquet"):
        match = _KAFKA_FILE.match(path.name)
        if match and match["topic"] == topic:
            files.append(LandedKafkaFile(path, int(match["partition"]), int(match["first"]), int(match["last"])))
    return sorted(files, key=lambda f: (f.partition, f.first_offset))


def next_kafka_offsets(landing_root: Path, topic: str) -> dict[int, int]:
    """Per partition, the offset after the last one landed."""
    next_offsets: dict[int, int] = {}
    for landed in landed_kafka_files(landing_root, topic):
        next_offsets[landed.partition] = max(next_offsets.get(landed.partition, 0), landed.last_offset + 1)
    return next_offsets


# --- SQL -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlBatch:
    path: Path
    sequence: int
    commit: dict


def landed_sql_batches(landing_root: Path, table: str) -> list[SqlBatch]:
    batches = []
    table_dir = sql_table_dir(landing_root, table)
    if not table_dir.exists():
        return []
    for path in table_dir.iterdir():
        match = _SQL_BATCH.match(path.name)
        if match and (path / COMMIT_FILE).exists():
            batches.append(SqlBatch(path, int(match["seq"]), json.loads((path / COMMIT_FILE).read_text())))
    return sorted(batches, key=lambda b: b.sequence)


def latest_sql_batch(landing_root: Path, table: str) -> SqlBatch | None:
    batches = landed_sql_batches(landing_root, table)
    return batches[-1] if batches else None
