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

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ingestion.config import Settings
from ingestion.errors import ConfigError, LandingError, SourceUnreachable
from ingestion.gc_pacing import batches_die_young
from ingestion.kafka import list_topic_partitions, make_consumer
from ingestion.kafka_parquet import PartitionBuffer, PartitionFiles, WriterThread
from ingestion.parquet_sink import remove_stale_temp_files
from ingestion.state import kafka_partition_dir, landing_lock, next_kafka_offsets
from ingestion.summary import LandingSummary

log = logging.getLogger(__name__)

CONSUME_BATCH = 10_000
PROBE_SECONDS = 10.0


def read_watermarks(consumer, settings: Settings, topic: str, partition: int) -> tuple[int, int]:
    """The partition's low and high watermarks from the broker (never the client's cache), retried."""
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


def _reset_behind_landing(topic: str, partition: int, start: int, end: int | None) -> LandingError:
    """The partition no longer holds the offset the landing zone continues from."""
    where = f"ends at offset {end}" if end is not None else f"has no offset {start} (out of range)"
    return LandingError(
        f"{topic}[{partition}]: the landing zone continues at offset {start}, but the partition {where}: the topic "
        "was deleted and created again or truncated (the embedded broker keeps nothing when it restarts). Nothing "
        "more was landed. New messages would "
        f"reuse offsets that already landed: move landing/kafka/{topic} away (README, Day-2 operations: re-land "
        "a source) before landing the new topic."
    )


def _out_of_range(topic: str, p: int, position: int, low: int, high: int, error) -> Exception:
    """What an out-of-range answer means when the partition's offsets are not below it (retention is below)."""
    if position >= high:
        return _reset_behind_landing(topic, p, position, high)
    return SourceUnreachable(
        f"{topic}[{p}]: the broker answered offset {position} as out of range ({error.str()}) although it "
        f"reports offsets {low}..{high - 1}; nothing from offset {position} on was landed by this run. Rerun to "
        "continue; if it happens again, check the broker's log for this partition."
    )


class ExpiredOffsets:
    """Offsets the topic's retention removed before they were landed: lost, and said so (log and summary)."""

    def __init__(self, summary: LandingSummary, topic: str):
        self.summary, self.topic = summary, topic

    def __call__(self, p: int, first: int, last: int, when: str) -> None:
        log.warning(
            "%s[%d]: offsets %d..%d expired from the topic (its retention removed them) %s; "
            "they are lost, the monitor's kafka_lag check reports them",
            self.topic,
            p,
            first,
            last,
            when,
        )
        self.summary.detail.setdefault("expired_before_landing", {}).setdefault(p, []).append([first, last])


def _transient(topic: str, error) -> None:
    """Errors librdkafka recovers from by itself (broker down, connection lost): the stall timeout decides."""
    if error.fatal():
        raise SourceUnreachable(f"{topic}: the Kafka client failed for good: {error.str()}; rerun to continue")
    log.warning("%s: %s (the client retries; waiting)", topic, error.str())


def confirm_end_offsets(
    consumer, topic: str, probe_from: dict[int, int], highs: dict[int, int], watermarks
) -> dict[int, int]:
    """Read from each probe position to partition EOF; the EOF offset is the partition's end."""
    ends = dict(probe_from)
    pending = set(probe_from)
    heard: set[int] = set()  # partitions that answered with a message or an EOF
    below: dict[int, int] = {}  # partitions whose end is, for now, below the offset the landing zone continues at
    consumer.assign([TopicPartition(topic, p, o) for p, o in probe_from.items()])
    deadline = time.monotonic() + PROBE_SECONDS
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(CONSUME_BATCH, timeout=0.5):
            p = message.partition()
            error = message.error()
            heard.add(p)
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if message.offset() < probe_from[p]:
                        # Below what landed: the topic was created again, or a broker that just restarted has
                        # not caught up (Apache Kafka restores its high watermark from a checkpoint): only
                        # still below at the deadline is it refused, so a restart is no false alarm.
                        below[p] = message.offset()
                        continue
                    below.pop(p, None)
                    ends[p] = max(ends[p], message.offset())
                    pending.discard(p)
                elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                    low, high = watermarks(p)
                    if ends[p] >= low:
                        raise _out_of_range(topic, p, probe_from[p], low, high, error)
                    # retention removed the probe's offset: probe from what is kept (the landing run will
                    # meet the same gap and report it)
                    ends[p] = max(low, high - 1)
                    consumer.incremental_unassign([TopicPartition(topic, p)])
                    consumer.incremental_assign([TopicPartition(topic, p, ends[p])])
                else:
                    _transient(topic, error)
                continue
            ends[p] = max(ends[p], message.offset() + 1)
    for p in sorted(pending & set(below)):
        raise _reset_behind_landing(topic, p, probe_from[p], below[p])
    for p in sorted(pending - heard):
        if highs[p] < probe_from[p]:  # asked past its end, the embedded broker answers nothing at all
            raise _reset_behind_landing(topic, p, probe_from[p], highs[p])
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
    expired = ExpiredOffsets(summary, topic)
    landing = settings.landing_root
    max_bytes = settings.landing_file_max_bytes
    with landing_lock(landing, f"kafka-{topic}"):
        consumer = consumer_factory(settings)
        writer = WriterThread()
        buffers: dict[int, PartitionBuffer] = {}
        try:
            partitions = list_topic_partitions(consumer, settings, topic).get(topic)
            if not partitions:
                raise ConfigError(
                    f"topic {topic!r} does not exist on {settings.resolved_kafka_bootstrap()}; create it "
                    "(`make stack-up` does for the embedded broker) or fix --topic"
                )
            landed = next_kafka_offsets(landing, topic)
            starts, probe_from, highs = {}, {}, {}
            for p in partitions:
                remove_stale_temp_files(kafka_partition_dir(landing, topic, p))
                low, high = read_watermarks(consumer, settings, topic, p)
                # Nothing landed yet starts at offset 0: what retention removed before the first landing
                # is lost too, and said so (the monitor's kafka_lag check counts it the same way).
                start = landed.get(p, 0)
                if start < low:
                    expired(p, start, low - 1, "before they were landed")
                    start = low
                starts[p], highs[p] = start, high
                probe_from[p] = max(start, high - 1)

            def watermarks(p: int) -> tuple[int, int]:
                return read_watermarks(consumer, settings, topic, p)

            ends = confirm_end_offsets(consumer, topic, probe_from, highs, watermarks)
            todo = {p for p in partitions if ends[p] > starts[p]}
            for p in todo:
                files = PartitionFiles(topic, p, kafka_partition_dir(landing, topic, p), max_bytes)
                buffers[p] = PartitionBuffer(files, writer)
            with batches_die_young(CONSUME_BATCH):
                stall = settings.kafka_stall_seconds
                _consume_until_ends(consumer, topic, starts, ends, todo, buffers, progress, stall, watermarks, expired)
            for buffer in buffers.values():
                buffer.flush()
                writer.submit(buffer.files.publish)
            writer.drain()
            commits = [
                TopicPartition(topic, p, b.files.last_landed + 1)
                for p, b in buffers.items()
                if b.files.last_landed is not None
            ]
            if commits:
                try:
                    consumer.commit(offsets=commits, asynchronous=False)
                except KafkaException as exc:
                    # The landing zone, not the group, is the source of truth: a failed commit only
                    # makes the lag metric stale.
                    log.warning("%s: landed, but committing offsets to group failed: %s", topic, exc)
        except BaseException:
            writer.stop()  # the writer thread no longer touches the files
            for buffer in buffers.values():
                buffer.files.abandon()
            raise
        finally:
            writer.stop()
            consumer.close()
    for p, buffer in sorted(buffers.items()):
        files = buffer.files
        summary.rows += files.rows
        summary.files += len(files.published)
        summary.bytes += files.bytes
        summary.paths += [str(path) for path in files.published]
        if files.last_landed is not None:
            summary.detail.setdefault("offsets", {})[p] = [starts[p], files.last_landed]
    summary.seconds = time.monotonic() - started
    return summary


def _consume_until_ends(
    consumer, topic, starts, ends, todo, buffers, progress, stall_seconds: float, watermarks, expired
) -> None:
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
    remaining = set(todo)
    positions = {p: starts[p] for p in todo}  # the next offset each partition's buffer expects
    last_message_at = time.monotonic()
    last_error = None
    while remaining:
        messages = consumer.consume(CONSUME_BATCH, timeout=1.0)
        if not messages:
            if time.monotonic() - last_message_at > stall_seconds:
                raise SourceUnreachable(
                    f"{topic}: no message for {stall_seconds:.0f}s while partitions {sorted(remaining)} were short "
                    f"of their end offsets {ends}; the broker may be down (last client error: "
                    f"{last_error.str() if last_error else 'none'}). Nothing was lost: files already renamed into "
                    "place hold complete ranges; rerun to continue (FITLAKE_KAFKA_STALL_SECONDS sets the wait)."
                )
            continue
        last_message_at = time.monotonic()
        by_partition: dict[int, list] = {}
        reached_eof, expired_to_end = [], []
        for message in messages:
            if message.error() is None:
                p = message.partition()
                if p in by_partition:
                    by_partition[p].append(message)
                else:
                    by_partition[p] = [message]
                continue
            error = message.error()
            if error.code() == KafkaError._PARTITION_EOF:
                reached_eof.append(message.partition())
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                p = message.partition()
                if p not in remaining:
                    continue
                position = by_partition[p][-1].offset() + 1 if p in by_partition else positions[p]
                low, high = watermarks(p)
                if position >= low:
                    raise _out_of_range(topic, p, position, low, high, error)
                # Retention removed offsets while this run was landing them (Kafka deletes by the records'
                # timestamps): say so, and go on from the oldest offset kept.
                expired(p, position, low - 1, "while this run was landing them")
                positions[p] = low
                consumer.incremental_unassign([TopicPartition(topic, p)])
                if low < ends[p]:
                    consumer.incremental_assign([TopicPartition(topic, p, low)])
                else:
                    expired_to_end.append(p)  # done once what this batch holds before the gap is buffered
            else:
                last_error = error
                _transient(topic, error)
        landed = 0
        for p, batch in by_partition.items():
            if p not in remaining:
                continue  # delivered before the unassign of a partition already at its end
            end = ends[p]
            if batch[-1].offset() >= end - 1:
                # This batch reached the end fixed at start: keep nothing past it.
                batch = [m for m in batch if m.offset() < end]
                remaining.discard(p)
                consumer.incremental_unassign([TopicPartition(topic, p)])
            if batch:
                buffers[p].add(batch)
                positions[p] = max(positions[p], batch[-1].offset() + 1)
                landed += len(batch)
        remaining.difference_update(expired_to_end)
        for p in reached_eof:
            if p in remaining:
                remaining.discard(p)
                consumer.incremental_unassign([TopicPartition(topic, p)])
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
