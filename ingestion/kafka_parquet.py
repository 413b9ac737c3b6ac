"""Kafka messages into Parquet files: Arrow conversion, per-partition buffers and a writer thread.

The consume loop holds the GIL for everything it does with message objects, so it does only that:
each consume batch's messages of a partition become one Arrow record batch at once (no message object
outlives its consume batch), and full buffers are handed to one writer thread. pyarrow releases the
GIL while it encodes and compresses, so the encoding of one row group overlaps the consumption of the
next. The writer thread writes, rolls over and publishes each partition's files in the order they
were handed over; a file becomes visible only complete, under its offset range.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ingestion.parquet_sink import ParquetFile, WriterThread, publish
from ingestion.state import kafka_file_name

log = logging.getLogger(__name__)

KAFKA_LANDING_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("us")),
        pa.field("key", pa.string()),
        pa.field("value", pa.string()),
    ]
)
# Dictionary pages only where values repeat: for a unique JSON value per message the writer built and
# dropped a dictionary in every row group. No min/max statistics of the raw key and value text.
KAFKA_PARQUET_OPTIONS = {
    "use_dictionary": ["topic", "partition", "key"],
    "write_statistics": ["topic", "partition", "offset", "timestamp"],
}
FLUSH_MESSAGES = 100_000  # messages per row group
FLUSH_BYTES = 16 * 1024 * 1024  # ... or fewer, when their Arrow buffers reach this (large values)


def as_text(raw: list) -> pa.Array:
    """Raw bytes as UTF-8 text; invalid UTF-8 keeps every byte as a \\xNN escape rather than failing."""
    binary = pa.array(raw, pa.binary())
    try:
        return binary.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if b is None else b.decode("utf-8", "backslashreplace") for b in raw], pa.string())


def _offsets(messages: list) -> pa.Array:
    """The offsets of one partition's messages, as the consumer delivered them (strictly increasing).

    n increasing offsets that span exactly n values are first, first + 1, ..., last, so no message is
    asked for its offset. A gap (transaction markers, compaction) falls back to asking each one.
    """
    first, last = messages[0].offset(), messages[-1].offset()
    n = len(messages)
    if last - first + 1 == n:
        return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), first - 1)
    return pa.array([m.offset() for m in messages], pa.int64())


def _timestamps(messages: list) -> pa.Array:
    """Broker timestamps (epoch ms; -1 when a message has none) as timestamp[us], null when absent."""
    millis = pa.array([m.timestamp()[1] for m in messages], pa.int64())
    if pc.min(millis).as_py() < 0:
        millis = pc.if_else(pc.less(millis, 0), pa.scalar(None, pa.int64()), millis)
    return millis.cast(pa.timestamp("ms")).cast(pa.timestamp("us"))


def record_batch(topic: str, partition: int, messages: list) -> pa.RecordBatch:
    """One partition's messages (in offset order) as a record batch of the landing schema."""
    n = len(messages)
    return pa.RecordBatch.from_arrays(
        [
            pa.repeat(pa.scalar(topic, pa.string()), n),
            pa.repeat(pa.scalar(partition, pa.int32()), n),
            _offsets(messages),
            _timestamps(messages),
            as_text([m.key() for m in messages]),
            as_text([m.value() for m in messages]),
        ],
        schema=KAFKA_LANDING_SCHEMA,
    )


class PartitionFiles:
    """The files of one partition. Only the writer thread calls these methods while a landing runs."""

    def __init__(self, topic: str, partition: int, directory: Path, max_bytes: int):
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.max_bytes = max_bytes
        self.file: ParquetFile | None = None
        self.file_first: int | None = None
        self.file_last: int | None = None
        self.last_landed: int | None = None  # the last offset in a published file
        self.published: list[Path] = []
        self.bytes = 0
        self.rows = 0

    def write(self, table: pa.Table, first_offset: int, last_offset: int) -> None:
        if self.file is None:
            self.file = ParquetFile(self.directory, KAFKA_LANDING_SCHEMA, **KAFKA_PARQUET_OPTIONS)
            self.file_first = first_offset
        self.file.write(table)
        self.file_last = last_offset
        if self.file.bytes_written >= self.max_bytes:
            self.publish()

    def publish(self) -> None:
        if self.file is None:
            return
        self.bytes += self.file.close_durably()
        final = self.directory / kafka_file_name(self.topic, self.partition, self.file_first, self.file_last)
        publish(self.file.temp_path, final)
        self.published.append(final)
        self.rows += self.file.rows
        self.last_landed = self.file_last
        self.file = None

    def abandon(self) -> None:
        if self.file is not None:
            self.file.abandon()
            self.file = None


class PartitionBuffer:
    """Record batches of one partition waiting for the writer thread, flushed as one row group."""

    def __init__(self, files: PartitionFiles, writer: WriterThread):
        self.files = files
        self.writer = writer
        self.flush_bytes = min(FLUSH_BYTES, files.max_bytes)
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.first_offset: int | None = None
        self.last_offset: int | None = None

    def add(self, messages: list) -> None:
        """Buffer one consume batch's messages of this partition (in offset order); flush when full."""
        batch = record_batch(self.files.topic, self.files.partition, messages)
        if not self.pending:
            self.first_offset = messages[0].offset()
        self.last_offset = messages[-1].offset()
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.pending_bytes += batch.nbytes
        if self.pending_rows >= FLUSH_MESSAGES or self.pending_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        table = pa.Table.from_batches(self.pending, schema=KAFKA_LANDING_SCHEMA)
        self.writer.submit(self.files.write, table, self.first_offset, self.last_offset)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
