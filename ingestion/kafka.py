"""Kafka clients for the landers, the simulator and replay: factories are the test seams."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ingestion.config import KAFKA_OPTION_PREFIX, KAFKA_TOPICS, Settings
from ingestion.errors import ConfigError, FitLakeError, SourceUnreachable

log = logging.getLogger(__name__)

LANDING_GROUP_ID = "fitlake-landing"

Progress = Callable[[int], None]  # called with increments: SQL rows written, messages produced


class ProduceError(FitLakeError):
    """Kafka did not acknowledge every produced message."""

    exit_code = 3


class Message(NamedTuple):
    """A message to produce (the simulator's and replay's), addressed by its contract topic name."""

    topic: str  # contract topic name: user_info, workout or bpm
    key: str | None
    value: str | None
    timestamp_us: int  # the message timestamp, epoch microseconds (Kafka keeps milliseconds)
    note: str = ""  # why the simulator made it so, comma-separated: malformed:<kind>, redelivered, late, out_of_order


def client_config(settings: Settings, defaults: dict | None = None, **overrides) -> dict:
    """Our defaults, then the operator's FITLAKE_KAFKA_OPT_* settings over them, then what a caller must set."""
    config = {"bootstrap.servers": settings.resolved_kafka_bootstrap(), **(defaults or {})}
    config.update(settings.kafka_options)
    config.update(overrides)
    return config


def consumer_config(settings: Settings, **overrides) -> dict:
    """The landers' consumer settings (the benchmark's bare loop uses the same)."""
    defaults = {
        "group.id": LANDING_GROUP_ID,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
    }
    required = {
        "enable.auto.commit": False,  # offsets are committed only after the files are in place
        "enable.auto.offset.store": False,
        # Every read starts at an explicit offset: one the broker no longer (or not yet) has is an
        # error event, never a silent jump to the start or the end of the partition.
        "auto.offset.reset": "error",
        "enable.partition.eof": True,  # the landers see where each partition ends
    }
    return client_config(settings, defaults, **{**required, **overrides})


def _client(kind, config: dict):
    try:
        return kind(config)
    except KafkaException as exc:  # e.g. an option librdkafka rejects, or two that contradict each other
        raise ConfigError(
            f"the Kafka {kind.__name__.lower()} settings are invalid: {exc.args[0].str()}. Check the "
            f"{KAFKA_OPTION_PREFIX}* variables (librdkafka's configuration names, dots as underscores)."
        ) from None


def make_consumer(settings: Settings, **overrides) -> Consumer:
    return _client(Consumer, consumer_config(settings, **overrides))


def make_producer(settings: Settings, **overrides) -> Producer:
    defaults = {"linger.ms": 20, "batch.num.messages": 10000, "enable.idempotence": True}
    return _client(Producer, client_config(settings, defaults, **overrides))


def make_admin(settings: Settings) -> AdminClient:
    return _client(AdminClient, client_config(settings))


def list_topic_partitions(client, settings: Settings, topic: str | None = None) -> dict[str, list[int]]:
    """Topic -> partition ids, retrying with backoff; SourceUnreachable when the broker never answers."""
    attempts = settings.connect_retries
    for attempt in range(1, attempts + 1):
        try:
            metadata = client.list_topics(topic=topic, timeout=settings.kafka_timeout_seconds)
            return {
                name: sorted(t.partitions)
                for name, t in metadata.topics.items()
                if t.error is None or t.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART
            }
        except KafkaException as exc:
            if attempt == attempts:
                raise SourceUnreachable(
                    f"Kafka brokers {settings.resolved_kafka_bootstrap()} did not answer after {attempt} "
                    f"attempt(s): {exc.args[0]}. Check FITLAKE_KAFKA_BOOTSTRAP (or `make stack-status` "
                    "for the embedded broker)."
                ) from exc
            delay = settings.retry_backoff_seconds * 2 ** (attempt - 1)
            log.warning("Kafka not reachable (attempt %d/%d): %s; retrying in %.1fs", attempt, attempts, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def ensure_topics(settings: Settings, topics=None, partitions: int | None = None) -> list[str]:
    """Create the contract's topics if missing; returns those created."""
    admin = make_admin(settings)
    wanted = list(topics or settings.kafka_topics)
    existing = list_topic_partitions(admin, settings)
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions or settings.kafka_partitions, replication_factor=1) for t in missing]
    )
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # Metadata propagates asynchronously; wait until every new topic is visible.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        existing = list_topic_partitions(admin, settings)
        if all(t in existing and existing[t] for t in missing):
            break
        time.sleep(0.2)
    return missing


def topic_names(settings: Settings) -> dict[str, str]:
    """Contract topic name -> configured topic name (Settings.kafka_topics, in contract order)."""
    if len(settings.kafka_topics) != len(KAFKA_TOPICS):
        raise ConfigError(
            f"kafka_topics {settings.kafka_topics} must name {len(KAFKA_TOPICS)} topics, for "
            f"{', '.join(KAFKA_TOPICS)} in that order"
        )
    return dict(zip(KAFKA_TOPICS, settings.kafka_topics, strict=True))


def produce_messages(
    settings: Settings, messages: Iterable[Message], progress: Progress | None = None, flush_timeout: float = 120.0
) -> Counter:
    """Produce (contract topic, key, value, timestamp) messages to the configured topics; count per topic.

    Delivery reports are requested for failures only, so a million readings cost no Python callbacks;
    any failure, or a message still unacknowledged after ``flush_timeout``, raises :class:`ProduceError`.
    """
    names = topic_names(settings)
    failures: list = []

    def on_failure(error, message) -> None:
        if error is not None:
            failures.append((message.topic(), error))

    producer = make_producer(settings, **{"on_delivery": on_failure, "delivery.report.only.error": True})
    counts: Counter = Counter()
    pending = 0
    started = time.monotonic()
    for n, message in enumerate(messages, 1):
        topic = names[message.topic]
        key = None if message.key is None else message.key.encode()
        value = None if message.value is None else message.value.encode()
        timestamp = message.timestamp_us // 1000
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=timestamp)
                break
            except BufferError:  # the local queue is full: let librdkafka send some
                producer.poll(0.1)
        counts[topic] += 1
        pending += 1
        if n % 1000 == 0:
            producer.poll(0)
            if failures:
                break
            if progress:
                progress(pending)
                pending = 0
    remaining = producer.flush(flush_timeout)
    if progress and pending:
        progress(pending)
    if failures or remaining:
        topic, error = failures[0] if failures else ("?", "timed out")
        hint = ""
        if failures and "timestamp" in str(error).lower():
            hint = (
                " Kafka rejects message timestamps too far in the future (log.message.timestamp.after.max.ms, "
                "1 hour by default on Kafka 4): choose a --start so the simulated days are in the past."
            )
        raise ProduceError(
            f"Kafka did not accept {len(failures) + remaining} of {sum(counts.values())} messages "
            f"({len(failures)} failed, {remaining} unacknowledged after {flush_timeout:.0f}s); first failure on "
            f"{topic}: {error}.{hint} Check the brokers ({settings.resolved_kafka_bootstrap()}); the topics may "
            "now hold part of the run."
        )
    log.info("produced %d messages in %.1fs", sum(counts.values()), time.monotonic() - started)
    return counts
