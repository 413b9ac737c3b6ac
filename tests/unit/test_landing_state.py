"""The landing zone's own record of what landed, and the atomic Parquet sink."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.errors import LandingError
from ingestion.kafka_parquet import as_text
from ingestion.parquet_sink import ParquetFile, publish, remove_stale_temp_files
from ingestion.state import (
    COMMIT_FILE,
    kafka_file_name,
    kafka_partition_dir,
    landed_kafka_files,
    landing_lock,
    latest_sql_batch,
    next_kafka_offsets,
)
from ingestion.summary import LandingSummary

SCHEMA = pa.schema([("x", pa.int64())])


def write_kafka_file(root, topic, partition, first, last):
    directory = kafka_partition_dir(root, topic, partition)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"x": list(range(first, last + 1))}, schema=SCHEMA),
        directory / kafka_file_name(topic, partition, first, last),
    )


def test_next_offsets_come_from_file_names(tmp_path):
    write_kafka_file(tmp_path, "bpm", 0, 0, 99)
    write_kafka_file(tmp_path, "bpm", 0, 100, 149)
    write_kafka_file(tmp_path, "bpm", 2, 0, 9)
    write_kafka_file(tmp_path, "bpm_other", 1, 0, 5)  # another topic's prefix must not leak in
    kafka_partition_dir(tmp_path, "bpm", 1).mkdir(parents=True)
    (kafka_partition_dir(tmp_path, "bpm", 1) / ".tmp-abc.partial").write_bytes(b"half")
    assert next_kafka_offsets(tmp_path, "bpm") == {0: 150, 2: 10}
    assert [(f.partition, f.first_offset, f.last_offset) for f in landed_kafka_files(tmp_path, "bpm")] == [
        (0, 0, 99),
        (0, 100, 149),
        (2, 0, 9),
    ]


def test_file_names_sort_by_offset():
    assert kafka_file_name("bpm", 2, 5, 12) == "bpm-2-00000000000000000005-00000000000000000012.parquet"
    assert kafka_file_name("bpm", 0, 9, 9) < kafka_file_name("bpm", 0, 10, 19)


def test_latest_sql_batch_ignores_directories_without_a_commit(tmp_path):
    for seq, committed in ((1, True), (2, True), (3, False)):
        batch = tmp_path / "sql" / "gym_logins" / f"batch={seq:06d}-20260101T000000Z"
        batch.mkdir(parents=True)
        if committed:
            (batch / COMMIT_FILE).write_text(json.dumps({"sequence": seq, "watermark": "2026-01-01T00:00:00"}))
    assert latest_sql_batch(tmp_path, "gym_logins").sequence == 2
    assert latest_sql_batch(tmp_path, "registered_users") is None


def test_a_half_written_file_is_invisible_until_published(tmp_path):
    target = tmp_path / "part.parquet"
    file = ParquetFile(tmp_path, SCHEMA)
    file.write(pa.table({"x": [1, 2, 3]}, schema=SCHEMA))
    assert not list(tmp_path.glob("*.parquet")), "a temporary file must not match *.parquet"
    size = file.close_durably()
    publish(file.temp_path, target)
    assert size == target.stat().st_size and pq.read_table(target)["x"].to_pylist() == [1, 2, 3]


def test_stale_temporary_files_are_removed(tmp_path):
    ParquetFile(tmp_path, SCHEMA)  # never closed: as after a SIGKILL
    assert remove_stale_temp_files(tmp_path) == 1 and not list(tmp_path.iterdir())


def test_one_lander_per_entity_at_a_time(tmp_path):
    with landing_lock(tmp_path, "kafka-bpm"):
        with pytest.raises(LandingError, match="already landing kafka-bpm"):
            with landing_lock(tmp_path, "kafka-bpm"):
                pass
        with landing_lock(tmp_path, "kafka-workout"):
            pass
    with landing_lock(tmp_path, "kafka-bpm"):
        pass


def test_raw_bytes_become_text_without_loss():
    assert as_text([b'{"a": 1}', None, "é".encode()]).to_pylist() == ['{"a": 1}', None, "é"]
    assert as_text([b"ok", b"\xff\x00"]).to_pylist() == ["ok", "\\xff\x00"]


def test_summary_line_reports_rows_files_bytes_seconds():
    line = LandingSummary(
        "kafka", "bpm", rows=1000, files=2, bytes=2_500_000, seconds=0.5, detail={"offsets": {0: [0, 999]}}
    ).line()
    assert line == "kafka:bpm: 1000 rows in 2 file(s), 2.50 MB, 0.50s (2,000 rows/s) offsets={0: [0, 999]}"
