"""Hostile Kafka values, fuzzed (hypothesis), through a real broker, the lander and a real dbt build.

Property: whatever bytes a message carries, the landing zone and bronze hold them as they are (text;
invalid UTF-8 as \\xNN escapes), and a value that is not a valid record reaches silver.quarantine
with that raw text and a reason; the dbt build never fails because of it.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.config import load_settings
from ingestion.kafka import ensure_topics, make_producer
from ingestion.land_kafka import land_kafka_topic
from ingestion.stack import start_broker, stop_process
from tests.support.landing import kafka_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt"))
from dbt_harness import Dbt  # noqa: E402

FIELDS = ("device_id", "time", "heartrate")


def as_landed(raw: bytes | None) -> str | None:
    """What the landing zone keeps of a value: UTF-8 text, every invalid byte as a \\xNN escape."""
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def is_valid_bpm(raw: bytes | None) -> bool:
    """True when a value could pass as a heart-rate record: only those may stay out of quarantine."""
    try:
        body = json.loads(raw, parse_constant=lambda name: {}[name])
    except (TypeError, ValueError, RecursionError):
        return False
    return isinstance(body, dict) and all(isinstance(body.get(f), (int, float)) for f in FIELDS)


def json_text(obj) -> bytes:
    return json.dumps(obj).encode()


NUMBER = st.one_of(st.integers(-(10**30), 10**30), st.floats(allow_nan=False), st.sampled_from([1e308, -1e308, 5e-324]))
WEIRD = st.one_of(
    st.text(max_size=20),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
HOSTILE_VALUES = st.one_of(
    st.binary(max_size=300),  # anything: mostly invalid UTF-8 and not JSON
    st.text(max_size=200).map(str.encode),
    # almost records: a field missing, mistyped, or a number no timestamp can hold
    st.fixed_dictionaries({}, optional={f: st.one_of(NUMBER, WEIRD) for f in FIELDS}).map(json_text),
    st.builds(lambda t: json_text({"device_id": 1, "time": t, "heartrate": 70.5}), NUMBER),
    # not JSON at all, strictly: NaN and Infinity, deep nesting, truncation, a BOM
    st.sampled_from(
        [
            b'{"device_id": 1, "time": NaN, "heartrate": 70}',
            b'{"device_id": 1, "time": 1700000000, "heartrate": Infinity}',
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000,
            b'{"device_id": 1, "time": 17',
            b'\xef\xbb\xbf{"device_id": 1, "time": 1700000000, "heartrate": 70}',
            b"",
            b"null",
            b'"a string"',
        ]
    ),
    st.none(),
)


def produce_and_land(bootstrap: str, landing: Path, work: Path, topic: str, values: list) -> dict:
    settings = load_settings(
        {"FITLAKE_DATA_ROOT": str(work), "FITLAKE_LANDING_ROOT": str(landing), "FITLAKE_KAFKA_BOOTSTRAP": bootstrap}
    )
    ensure_topics(settings, [topic], partitions=1)
    producer = make_producer(settings)
    for i, value in enumerate(values):
        producer.produce(topic, key=str(i), value=value, timestamp=1_700_000_000_000 + i)
    assert producer.flush(30) == 0
    assert land_kafka_topic(settings, topic).rows == len(values)
    landed = {r["offset"]: r["value"] for r in kafka_rows(landing, topic)}
    assert landed == {i: as_landed(v) for i, v in enumerate(values)}
    return landed


@given(values=st.lists(HOSTILE_VALUES, min_size=1, max_size=80))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_values_land_as_they_are(embedded_kafka, tmp_path_factory, values):
    work = tmp_path_factory.mktemp("landing_fuzz")
    produce_and_land(embedded_kafka, work / "landing", work, f"fuzz_{uuid.uuid4().hex[:8]}", values)


@given(values=st.lists(HOSTILE_VALUES, min_size=80, max_size=160))
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_values_reach_bronze_and_quarantine_as_they_are(tmp_path_factory, values):
    """One dbt build (the slow part) over many hostile values."""
    work = tmp_path_factory.mktemp("value_fuzz")
    dbt = Dbt(work / "dbt")
    broker = start_broker(work / "tansu")  # its own: the topic must be the contract's `bpm`
    try:
        landed = produce_and_land(broker.bootstrap, dbt.landing, work, "bpm", values)
    finally:
        stop_process(broker.pid)

    dbt.build("--select", "+quarantine")  # fails the test if any model or error-level test fails
    bronze = dict(dbt.query("""select "offset", value from bronze.kafka_multiplex_bz where topic = 'bpm'"""))
    assert bronze == landed
    quarantined = {
        offset: (raw, reason)
        for offset, raw, reason in dbt.query(
            "select kafka_offset, raw_record, reason from silver.quarantine where topic = 'bpm'"
        )
    }
    for offset, value in enumerate(values):
        if not is_valid_bpm(value):
            assert offset in quarantined, (offset, value)
            raw, reason = quarantined[offset]
            assert raw == landed[offset] and reason, (offset, value, raw, reason)
