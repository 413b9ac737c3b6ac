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
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from ingestion.errors import ConfigError, SourceUnreachable
from ingestion.kafka import LANDING_GROUP_ID, client_config, ensure_topics, make_consumer, make_producer
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


class RetentionMidLanding:
    """A real consumer; when the lander assigns the partitions to land them (after its probe), the broker
    deletes partition 0's records below `upto`, as retention does (Kafka's DeleteRecords)."""

    def __init__(self, consumer, settings, topic, upto):
        self._consumer, self.admin, self.topic, self.upto = consumer, AdminClient(client_config(settings)), topic, upto
        self.assigns = 0

    def __getattr__(self, name):
        return getattr(self._consumer, name)

    def assign(self, partitions):
        self.assigns += 1
        if self.assigns == 2:  # the first assign is the probe's
            delete_records(self.admin, self.topic, self.upto)
        return self._consumer.assign(partitions)


def delete_records(admin, topic, upto):
    for future in admin.delete_records([TopicPartition(topic, 0, upto)]).values():
        assert future.result(timeout=30).low_watermark == upto


@pytest.mark.parametrize("when", ["before the first landing", "before", "while"])
def test_offsets_retention_removes_are_reported_expired_and_the_rest_lands_once(
    make_settings, real_kafka, when, caplog
):
    """Apache Kafka deletes records by their timestamps (7 days by default): in CI it removed recorded test data
    between the lander's probe and its fetch. On Apache Kafka only: Tansu keeps what it holds."""
    settings = make_settings(FITLAKE_KAFKA_BOOTSTRAP=real_kafka)
    topic = f"bpm_{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=3)
    delivered = produce(settings, topic, bpm_messages(1500))
    if when != "before the first landing":
        assert land_kafka_topic(settings, topic).rows == 1500
    later = produce(settings, topic, bpm_messages(1500, start=1500))
    later_in_p0 = sorted(offset for partition, offset, _, _ in later if partition == 0)
    first, upto = later_in_p0[0], later_in_p0[len(later_in_p0) // 2]
    if when == "before the first landing":
        delivered, later, first = [], delivered + later, 0
    if when.startswith("before"):
        delete_records(AdminClient(client_config(settings)), topic, upto)
        factory = make_consumer
    else:
        factory = lambda s: RetentionMidLanding(make_consumer(s), s, topic, upto)  # noqa: E731
    summary = land_kafka_topic(settings, topic, consumer_factory=factory)
    assert summary.rows == len(later) - (upto - first)
    assert summary.detail["expired_before_landing"] == {0: [[first, upto - 1]]}
    said = when.split()[0]
    warning = f"{topic}[0]: offsets {first}..{upto - 1} expired from the topic (its retention removed them) {said}"
    assert any(warning in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    index = landed_index(settings, topic)
    kept = {(p, offset) for p, offset, _, _ in delivered + later if p != 0 or not first <= offset < upto}
    assert set(index) == kept and max(index.values()) == 1
    assert land_kafka_topic(settings, topic).rows == 0  # and the rerun lands nothing twice


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
