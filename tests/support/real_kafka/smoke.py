"""Smoke check of the real Kafka broker: ``python -m tests.support.real_kafka.smoke``.

Starts a broker, creates a 3-partition topic, produces 1000 messages, reads
them back with assign() + enable.partition.eof, checks the watermarks, stops
the broker and checks the JVM is gone. Prints timings.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from . import KAFKA_VERSION, ensure_kafka_jars, start_real_kafka

N_MESSAGES = 1000
PARTITIONS = 3


def main() -> int:
    t0 = time.monotonic()
    ensure_kafka_jars()
    t_jars = time.monotonic() - t0

    with tempfile.TemporaryDirectory(prefix="real-kafka-smoke-") as tmp:
        t1 = time.monotonic()
        with start_real_kafka(Path(tmp)) as kafka:
            t_start = time.monotonic() - t1
            pid = kafka.pid
            topic = "smoke-events"
            admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
            fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic]
            fut.result(timeout=30)

            producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
            for i in range(N_MESSAGES):
                producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTITIONS)
            assert producer.flush(30) == 0, "messages left unflushed"

            consumer = Consumer(
                {
                    "bootstrap.servers": kafka.bootstrap,
                    "group.id": "smoke",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                }
            )
            consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
            seen, eof = set(), set()
            deadline = time.monotonic() + 60
            while len(eof) < PARTITIONS and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(msg.partition())
                        continue
                    raise RuntimeError(msg.error())
                seen.add(int(msg.key()))
            assert seen == set(range(N_MESSAGES)), f"read {len(seen)} of {N_MESSAGES}"
            total_hw = 0
            for p in range(PARTITIONS):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                expected = len(range(p, N_MESSAGES, PARTITIONS))
                assert (low, high) == (0, expected), (p, low, high, expected)
                total_hw += high
            consumer.close()
            assert total_hw == N_MESSAGES
            t_stop0 = time.monotonic()
        t_stop = time.monotonic() - t_stop0
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"broker JVM {pid} still running after stop()"

    print(
        f"Kafka {KAFKA_VERSION}: jars {t_jars:.1f}s, start {t_start:.1f}s, "
        f"stop {t_stop:.1f}s; produced/consumed {N_MESSAGES} over {PARTITIONS} "
        f"partitions, watermarks sum {total_hw}: OK"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
