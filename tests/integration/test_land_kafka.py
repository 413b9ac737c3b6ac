"""The Kafka lander against the embedded broker and a real Apache Kafka (every test runs on both)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from ingestion.errors import ConfigError, SourceUnreachable
from ingestion.kafka import LANDING_GROUP_ID, ensure_topics, make_consumer, make_producer
from ingestion.land_kafka import land_kafka_topic
from ingestion.stack import free_port
from tests.support.landing import kafka_rows, temp_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def settings(make_settings, kafka_bootstrap):
    return make_settings(FITLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap)


@pytest.fixture
def topic(settings):
    name = f"bpm_{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [name], partitions=3)
    return name


def produce(settings, topic, messages, timestamp_ms=None):
    """Produce (key, value) pairs; returns them as delivered with partition and offset."""
    producer = make_producer(settings)
    delivered, failed = [], []

    def on_delivery(err, msg):
        (failed if err else delivered).append(err or (msg.partition(), msg.offset(), msg.key(), msg.value()))

    for key, value in messages:
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    on_delivery=on_delivery,
                    **({"timestamp": timestamp_ms} if timestamp_ms else {}),
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not failed, failed[:3]
    return delivered


def bpm_messages(n, start=0):
    return [
        (str(i % 50), json.dumps({"device_id": i % 50, "time": 1_700_000_000 + i + 0.25, "heartrate": 60 + i % 90}))
        for i in range(start, start + n)
    ]


def landed_index(settings, topic):
    return Counter((r["partition"], r["offset"]) for r in kafka_rows(settings.landing_root, topic))


def test_lands_every_message_once_with_lineage(settings, topic):
    delivered = produce(settings, topic, bpm_messages(5000), timestamp_ms=1_700_000_123_456)
    summary = land_kafka_topic(settings, topic)
    assert summary.rows == 5000
    rows = kafka_rows(settings.landing_root, topic)
    got = {(r["partition"], r["offset"]): r for r in rows}
    assert len(rows) == len(got) == 5000
    for partition, offset, key, value in delivered:
        row = got[(partition, offset)]
        assert (row["topic"], row["key"], row["value"]) == (topic, key.decode(), value.decode())
        assert row["timestamp"].isoformat() == "2023-11-14T22:15:23.456000"
    # A second run finds nothing new and writes nothing.
    assert land_kafka_topic(settings, topic).rows == 0
    assert len(kafka_rows(settings.landing_root, topic)) == 5000


def test_file_names_carry_contiguous_offset_ranges_and_roll_over_by_size(make_settings, kafka_bootstrap, topic):
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap, FITLAKE_LANDING_FILE_MAX_BYTES=16 * 1024)
    produce(settings, topic, bpm_messages(60_000))
    summary = land_kafka_topic(settings, topic)
    assert summary.rows == 60_000
    assert summary.files > 3, "files should roll over at the configured size"
    from ingestion.state import landed_kafka_files

    by_partition = {}
    for landed in landed_kafka_files(settings.landing_root, topic):
        by_partition.setdefault(landed.partition, []).append(landed)
    for files in by_partition.values():
        assert files[0].first_offset == 0
        for before, after in zip(files, files[1:]):
            assert after.first_offset == before.last_offset + 1


def test_malformed_values_and_invalid_utf8_are_landed_raw(settings, topic):
    produce(settings, topic, [("1", "{not json"), ("2", b"\xff\xfe\x00binary"), (None, ""), ("3", None)])
    land_kafka_topic(settings, topic)
    values = {r["key"]: r["value"] for r in kafka_rows(settings.landing_root, topic)}
    assert values["1"] == "{not json"
    assert values["2"] == "\\xff\\xfe\x00binary"
    assert values[None] == ""
    assert values["3"] is None


def test_offsets_committed_after_landing_but_landing_zone_is_the_truth(settings, topic):
    produce(settings, topic, bpm_messages(900))
    land_kafka_topic(settings, topic)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": LANDING_GROUP_ID})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
        landed = landed_index(settings, topic)
        for tp in committed:
            ends = [o for (p, o) in landed if p == tp.partition]
            assert tp.offset == (max(ends) + 1 if ends else -1001)
        # Rewind the group to the beginning: the lander must still continue from the landing zone.
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(3)], asynchronous=False)
    finally:
        consumer.close()
    produce(settings, topic, bpm_messages(100, start=900))
    assert land_kafka_topic(settings, topic).rows == 100
    assert sum(landed_index(settings, topic).values()) == 1000


def test_bounded_batch_does_not_chase_a_live_topic(settings, topic):
    produce(settings, topic, bpm_messages(20_000))
    stop = threading.Event()
    produced_later = []

    def keep_producing():
        i = 20_000
        while not stop.is_set():
            produced_later.extend(produce(settings, topic, bpm_messages(500, start=i)))
            i += 500

    writer = threading.Thread(target=keep_producing)
    writer.start()
    try:
        time.sleep(0.5)
        first = land_kafka_topic(settings, topic)  # must return although messages keep coming
    finally:
        stop.set()
        writer.join()
    assert first.rows >= 20_000
    total = 20_000 + len(produced_later)
    assert first.rows < total, "the first batch should have stopped at the end it saw when it started"
    landed = 0
    for _ in range(5):  # later runs pick up the rest, each bounded
        landed = sum(landed_index(settings, topic).values())
        if landed == total:
            break
        land_kafka_topic(settings, topic)
    index = landed_index(settings, topic)
    assert sum(index.values()) == total and max(index.values()) == 1


class AnswersOutOfRange:
    """A real consumer whose broker, `times` times, answers partition 0's first fetch as out of range.

    Apache Kafka did so once under load (CI, a topic just written to) while the partition held the offset.
    """

    def __init__(self, consumer, times):
        self._consumer, self.left = consumer, times

    def __getattr__(self, name):
        return getattr(self._consumer, name)

    def consume(self, *args, **kwargs):
        messages = self._consumer.consume(*args, **kwargs)
        at_zero = [m for m in messages if m.error() is None and m.partition() == 0 and m.offset() == 0]
        if not (self.left and at_zero):
            return messages
        self.left -= 1
        reset = Message(
            topic=at_zero[0].topic(),
            partition=0,
            offset=0,
            error=KafkaError(KafkaError._AUTO_OFFSET_RESET, "fetch failed: Broker: Offset out of range"),
        )
        return [m for m in messages if m.partition() != 0] + [reset]


@pytest.mark.parametrize("times", [1, 3])
def test_an_out_of_range_answer_for_an_offset_the_partition_holds_is_fetched_again(settings, topic, times, caplog):
    produce(settings, topic, bpm_messages(3000))
    summary = land_kafka_topic(settings, topic, consumer_factory=lambda s: AnswersOutOfRange(make_consumer(s), times))
    assert summary.rows == 3000
    index = landed_index(settings, topic)
    assert sum(index.values()) == 3000 and max(index.values()) == 1
    refetched = [r.getMessage() for r in caplog.records if "fetching it again" in r.getMessage()]
    assert len(refetched) == times and f"{topic}[0]: the broker answered offset 0 as out of range" in refetched[0]


def test_an_offset_answered_out_of_range_again_and_again_fails_naming_the_partition(settings, topic):
    produce(settings, topic, bpm_messages(3000))
    with pytest.raises(SourceUnreachable, match=rf"{topic}\[0\]: the broker answered offset 0 as out of range 4 times"):
        land_kafka_topic(settings, topic, consumer_factory=lambda s: AnswersOutOfRange(make_consumer(s), 99))
    assert not temp_files(settings.landing_root)
    land_kafka_topic(settings, topic)  # the broker answers again: the rerun lands the rest, nothing twice
    index = landed_index(settings, topic)
    assert sum(index.values()) == 3000 and max(index.values()) == 1


def test_missing_topic_is_named(settings):
    with pytest.raises(ConfigError, match="no_such_topic_x"):
        land_kafka_topic(settings, "no_such_topic_x")


def test_unreachable_broker_fails_clearly_after_retries(make_settings):
    settings = make_settings(
        FITLAKE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", FITLAKE_CONNECT_RETRIES=2, FITLAKE_KAFKA_TIMEOUT_SECONDS=2
    )
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match="did not answer after 2 attempt"):
        land_kafka_topic(settings, "bpm")
    assert time.monotonic() - started < 60


def test_cli_exit_code_and_message_when_broker_unreachable(tmp_path):
    env = {
        **os.environ,
        "FITLAKE_DATA_ROOT": str(tmp_path),
        "FITLAKE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "FITLAKE_CONNECT_RETRIES": "1",
        "FITLAKE_KAFKA_TIMEOUT_SECONDS": "2",
        "PYTHONPATH": REPO_ROOT,
    }
    result = subprocess.run(
        [sys.executable, "-m", "ingestion", "land", "kafka", "--topic", "bpm"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == SourceUnreachable.exit_code
    assert "error: Kafka brokers 127.0.0.1:" in result.stderr


def test_exactly_once_under_sigkill(make_settings, kafka_bootstrap, tmp_path):
    """Kill the lander with SIGKILL at 20+ random points, rerun until done: every message lands once."""
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap, FITLAKE_LANDING_FILE_MAX_BYTES=256 * 1024)
    topic = f"kill_{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=3)
    delivered = produce(settings, topic, bpm_messages(150_000))
    env = {
        **os.environ,
        "FITLAKE_DATA_ROOT": str(settings.data_root),
        "FITLAKE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "FITLAKE_LANDING_ROOT": str(settings.landing_root),
        "FITLAKE_LANDING_FILE_MAX_BYTES": str(256 * 1024),
        "PYTHONPATH": REPO_ROOT,
    }
    command = [sys.executable, "-m", "ingestion", "land", "kafka", "--topic", topic]
    rng = random.Random(20261123)
    kills = 0
    while kills < 20:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            # Whatever is visible after a kill is complete and readable.
            kafka_rows(settings.landing_root, topic)
        else:
            assert process.returncode == 0, process.stderr.read()
            # Finished before the kill: give it more to do.
            delivered += produce(settings, topic, bpm_messages(30_000, start=len(delivered)))
    for _ in range(5):
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
        if sum(landed_index(settings, topic).values()) >= len(delivered):
            break
    index = landed_index(settings, topic)
    assert max(index.values()) == 1, "a message landed twice"
    assert set(index) == {(p, o) for p, o, _, _ in delivered}
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    assert not temp_files(settings.landing_root)
