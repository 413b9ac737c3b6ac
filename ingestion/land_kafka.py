"""Bounded micro-batches from Kafka topics into Parquet, exactly once.

A run fixes, per partition, the end offset it sees when it starts and never
reads past it. The high watermark alone is not enough: some Kafka-compatible
brokers report the base offset of the last record batch + 1, so the end is
confirmed by reading from there to partition EOF (a bounded read of at most
one producer batch; on Apache Kafka the EOF comes at once).

Files are written under temporary names, fsynced and renamed into place with
the offset range in their name; that name is the landing zone's record of
what has landed, and the next run starts after it. Offsets are committed to
the consumer group afterwards, for lag monitoring only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ingestion.config import Settings
from ingestion.errors import ConfigError, SourceUnreachable
from ingestion.kafka import list_topic_partitions, make_consumer
from ingestion.parquet_sink import ParquetFile, publish, remove_stale_temp_files
from ingestion.state import kafka_file_name, kafka_partition_dir, landing_lock, next_kafka_offsets
from ingestion.summary import LandingSummary

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

FLUSH_MESSAGES = 100_000
# Raw bytes buffered per partition before a row group is written: bounds memory with large values.
FLUSH_BYTES = 16 * 1024 * 1024
CONSUME_BATCH = 10_000
PROBE_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 30.0


def _as_text(raw: list) -> pa.Array:
    """Raw bytes as UTF-8 text; invalid UTF-8 keeps every byte as a \\xNN escape rather than failing."""
    binary = pa.array(raw, pa.binary())
    try:
        return binary.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if b is None else b.decode("utf-8", "backslashreplace") for b in raw], pa.string())


@dataclass
class _PartitionBuffer:
    """Messages of one partition waiting to be written, and the file they are written to.

    Message objects are kept as they come and unpacked column by column at
    flush time: one list append per message keeps the consume loop cheap.
    """

    topic: str
    partition: int
    directory: object
    max_bytes: int
    messages: list = field(default_factory=list)
    file: ParquetFile | None = None
    file_first: int | None = None
    file_last: int | None = None
    published: list = field(default_factory=list)
    bytes: int = 0
    rows: int = 0
    average_value_bytes: float = 0.0

    def __post_init__(self):
        self.flush_bytes = min(FLUSH_BYTES, self.max_bytes)

    def should_flush(self) -> bool:
        pending = len(self.messages)
        if not self.average_value_bytes and pending:
            self.average_value_bytes = max(1, len(self.messages[0].value() or b""))
        return pending >= FLUSH_MESSAGES or pending * self.average_value_bytes >= self.flush_bytes

    def flush(self) -> None:
        messages = self.messages
        if not messages:
            return
        n = len(messages)
        offsets = [m.offset() for m in messages]
        millis = [m.timestamp()[1] for m in messages]
        values = [m.value() for m in messages]
        micros = pc.multiply(pa.array([t if t >= 0 else None for t in millis], pa.int64()), 1000)
        values_text = _as_text(values)
        batch = pa.RecordBatch.from_arrays(
            [
                pa.repeat(pa.scalar(self.topic, pa.string()), n),
                pa.repeat(pa.scalar(self.partition, pa.int32()), n),
                pa.array(offsets, pa.int64()),
                micros.cast(pa.timestamp("us")),
                _as_text([m.key() for m in messages]),
                values_text,
            ],
            schema=KAFKA_LANDING_SCHEMA,
        )
        self.average_value_bytes = max(1.0, values_text.nbytes / n)
        if self.file is None:
            self.file = ParquetFile(self.directory, KAFKA_LANDING_SCHEMA)
            self.file_first = offsets[0]
        self.file.write(batch)
        self.file_last = offsets[-1]
        self.rows += n
        self.messages = []
        if self.file.bytes_written >= self.max_bytes:
            self.publish()

    def publish(self) -> None:
        if self.file is None:
            return
        self.bytes += self.file.close_durably()
        final = self.directory / kafka_file_name(self.topic, self.partition, self.file_first, self.file_last)
        publish(self.file.temp_path, final)
        self.published.append(final)
        self.file = None

    def abandon(self) -> None:
        if self.file is not None:
            self.file.abandon()
            self.file = None


def _watermarks(consumer, settings: Settings, topic: str, partition: int) -> tuple[int, int]:
    for attempt in range(1, settings.connect_retries + 1):
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=settings.kafka_timeout_seconds, cached=False
            )
        except KafkaException as exc:
            if attempt == settings.connect_retries:
                raise SourceUnreachable(
                    f"cannot read the offsets of {topic}[{partition}] from {settings.resolved_kafka_bootstrap()}: "
                    f"{exc.args[0]}"
                ) from exc
            time.sleep(settings.retry_backoff_seconds * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _confirm_end_offsets(consumer, topic: str, probe_from: dict[int, int]) -> dict[int, int]:
    """Read from each probe position to partition EOF; the EOF offset is the partition's end."""
    ends = dict(probe_from)
    pending = set(probe_from)
    consumer.assign([TopicPartition(topic, p, o) for p, o in probe_from.items()])
    deadline = time.monotonic() + PROBE_SECONDS
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(CONSUME_BATCH, timeout=0.5):
            p = message.partition()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ends[p] = max(ends[p], message.offset())
                    pending.discard(p)
                elif error.fatal():
                    raise KafkaException(error)
                continue
            ends[p] = max(ends[p], message.offset() + 1)
    if pending:
        # A partition written to faster than we read: its end is what we saw by the deadline.
        log.info(
            "%s: partitions %s still growing; ending this batch at %s",
            topic,
            sorted(pending),
            {p: ends[p] for p in pending},
        )
    consumer.unassign()
    return ends


def land_kafka_topic(
    settings: Settings,
    topic: str,
    consumer_factory: Callable[..., object] = make_consumer,
    progress: Callable[[int], None] | None = None,
) -> LandingSummary:
    started = time.monotonic()
    summary = LandingSummary(source="kafka", entity=topic)
    landing = settings.landing_root
    with landing_lock(landing, f"kafka-{topic}"):
        consumer = consumer_factory(settings)
        buffers: dict[int, _PartitionBuffer] = {}
        try:
            partitions = list_topic_partitions(consumer, settings, topic).get(topic)
            if not partitions:
                raise ConfigError(
                    f"topic {topic!r} does not exist on {settings.resolved_kafka_bootstrap()}; create it "
                    "(`make stack-up` does for the embedded broker) or fix --topic"
                )
            landed = next_kafka_offsets(landing, topic)
            starts, probe_from = {}, {}
            for p in partitions:
                remove_stale_temp_files(kafka_partition_dir(landing, topic, p))
                low, high = _watermarks(consumer, settings, topic, p)
                start = landed.get(p, low)
                if start < low:
                    log.warning(
                        "%s[%d]: offsets %d..%d expired from the topic before they were landed",
                        topic,
                        p,
                        start,
                        low - 1,
                    )
                    summary.detail.setdefault("expired_before_landing", {})[p] = [start, low - 1]
                    start = low
                starts[p] = start
                probe_from[p] = max(start, high - 1)
            ends = _confirm_end_offsets(consumer, topic, probe_from)
            todo = {p for p in partitions if ends[p] > starts[p]}
            for p in todo:
                buffers[p] = _PartitionBuffer(
                    topic, p, kafka_partition_dir(landing, topic, p), settings.landing_file_max_bytes
                )
            _consume_until_ends(consumer, topic, starts, ends, todo, buffers, summary, progress)
            for buffer in buffers.values():
                buffer.flush()
                buffer.publish()
            commits = [TopicPartition(topic, p, b.file_last + 1) for p, b in buffers.items() if b.file_last is not None]
            if commits:
                try:
                    consumer.commit(offsets=commits, asynchronous=False)
                except KafkaException as exc:
                    # The landing zone, not the group, is the source of truth: a failed commit only
                    # makes the lag metric stale.
                    log.warning("%s: landed, but committing offsets to group failed: %s", topic, exc)
        except BaseException:
            for buffer in buffers.values():
                buffer.abandon()
            raise
        finally:
            consumer.close()
    for p, buffer in sorted(buffers.items()):
        summary.rows += buffer.rows
        summary.files += len(buffer.published)
        summary.bytes += buffer.bytes
        summary.paths += [str(path) for path in buffer.published]
        if buffer.file_last is not None:
            summary.detail.setdefault("offsets", {})[p] = [starts[p], buffer.file_last]
    summary.seconds = time.monotonic() - started
    return summary


def _consume_until_ends(consumer, topic, starts, ends, todo, buffers, summary, progress) -> None:
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
    remaining = set(todo)
    last_message_at = time.monotonic()
    while remaining:
        messages = consumer.consume(CONSUME_BATCH, timeout=1.0)
        if not messages:
            if time.monotonic() - last_message_at > IDLE_TIMEOUT_SECONDS:
                raise SourceUnreachable(
                    f"{topic}: no message for {IDLE_TIMEOUT_SECONDS:.0f}s while partitions {sorted(remaining)} "
                    f"were short of their end offsets {ends}; the broker may be down. Nothing was lost: "
                    "files already renamed into place hold complete ranges, rerun to continue."
                )
            continue
        last_message_at = time.monotonic()
        touched = set()
        for message in messages:
            error = message.error()
            if error is not None:
                p = message.partition()
                if error.code() == KafkaError._PARTITION_EOF:
                    if p in remaining:
                        remaining.discard(p)
                        consumer.incremental_unassign([TopicPartition(topic, p)])
                elif error.fatal() or not error.retriable():
                    raise KafkaException(error)
                else:
                    log.warning("%s: retriable consumer error: %s", topic, error)
                continue
            p = message.partition()
            if p in remaining:
                buffers[p].messages.append(message)
                touched.add(p)
        landed = 0
        for p in touched:
            buffer = buffers[p]
            end = ends[p]
            if buffer.messages[-1].offset() >= end - 1:
                # This batch reached the end fixed at start: keep nothing past it.
                buffer.messages = [m for m in buffer.messages if m.offset() < end]
                if p in remaining:
                    remaining.discard(p)
                    consumer.incremental_unassign([TopicPartition(topic, p)])
            if buffer.should_flush():
                landed += len(buffer.messages)
                buffer.flush()
        if progress and landed:
            progress(landed)


def land_kafka_topics(settings: Settings, topics: list[str] | None = None) -> list[LandingSummary]:
    names = topics or list(settings.kafka_topics)
    summaries = []
    for topic in names:
        summary = land_kafka_topic(settings, topic)
        log.info("%s", summary.line())
        summaries.append(summary)
    return summaries
