"""Kafka clients for the landers and the simulator: factories are the test seams."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ingestion.config import Settings
from ingestion.errors import SourceUnreachable

log = logging.getLogger(__name__)

LANDING_GROUP_ID = "fitlake-landing"


def client_config(settings: Settings, **overrides) -> dict:
    config = {"bootstrap.servers": settings.resolved_kafka_bootstrap()}
    config.update(settings.kafka_options)
    config.update(overrides)
    return config


def make_consumer(settings: Settings, **overrides) -> Consumer:
    return Consumer(
        client_config(
            settings,
            **{
                "group.id": LANDING_GROUP_ID,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "queued.max.messages.kbytes": 256 * 1024,
                **overrides,
            },
        )
    )


def make_producer(settings: Settings, **overrides) -> Producer:
    return Producer(
        client_config(
            settings,
            **{"linger.ms": 20, "batch.num.messages": 10000, "enable.idempotence": True, **overrides},
        )
    )


def make_admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


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
