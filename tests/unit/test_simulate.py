"""The simulator's pure layer: determinism, the configured defect rates and the shape of the data."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingestion.errors import ConfigError
from ingestion.simulate import (
    KEY_FIELDS,
    MALFORMED_KINDS,
    SimulationRates,
    default_start,
    epoch_text,
    from_us,
    generate,
    to_us,
)

START = datetime(2024, 3, 1, tzinfo=UTC)
SHORT = dict(workout_minutes=(3.0, 6.0))  # fewer 1 Hz readings: fast tests, same shapes
CLEAN = SimulationRates(redelivered=0, out_of_order=0, late=0, malformed=0, **SHORT)
EPOCH_TEXT = re.compile(r"^\d{10}(\.\d{1,6})?$")


@pytest.fixture(scope="module")
def noisy():
    rates = SimulationRates(
        redelivered=0.05,
        out_of_order=0.05,
        late=0.03,
        malformed=0.04,
        open_visit=0.2,
        unfinished_workout=0.2,
        profile_update=0.5,
        profile_delete=0.4,
        **SHORT,
    )
    return rates, generate(members=40, gyms=3, days=3, seed=11, start=START, rates=rates)


@pytest.fixture(scope="module")
def clean():
    return generate(members=30, gyms=2, days=2, seed=5, start=START, rates=CLEAN)


def _payload(value: str):
    try:
        return json.loads(value, parse_float=Decimal)
    except json.JSONDecodeError:
        return None


def test_same_seed_same_data_other_seed_other_data():
    a = generate(members=8, gyms=2, days=2, seed=3, start=START, rates=SimulationRates(**SHORT))
    b = generate(members=8, gyms=2, days=2, seed=3, start=START, rates=SimulationRates(**SHORT))
    c = generate(members=8, gyms=2, days=2, seed=4, start=START, rates=SimulationRates(**SHORT))
    assert a.sql_changes == b.sql_changes
    assert a.messages == b.messages
    assert a.stats == b.stats
    assert a.sql_changes != c.sql_changes
    assert a.messages != c.messages


def test_defect_rates_come_out_near_their_configured_shares(noisy):
    rates, data = noisy
    produced = len(data.messages)
    originals = produced - data.stats.redelivered
    assert produced > 5000
    assert data.stats.redelivered / originals == pytest.approx(rates.redelivered, rel=0.25)
    assert sum(data.stats.malformed.values()) / originals == pytest.approx(rates.malformed, rel=0.25)
    assert data.stats.late / produced == pytest.approx(rates.late, rel=0.25)
    assert data.stats.out_of_order / originals == pytest.approx(rates.out_of_order * (1 - rates.late), rel=0.25)
    notes = Counter(note for m in data.messages for note in m.note.split(",") if note)
    assert notes["late"] == data.stats.late
    assert notes["redelivered"] == data.stats.redelivered
    assert notes["out_of_order"] == data.stats.out_of_order
    assert data.stats.messages == Counter(m.topic for m in data.messages)


def test_every_malformed_kind_appears_and_is_really_malformed(noisy):
    _, data = noisy
    assert set(data.stats.malformed) == set(MALFORMED_KINDS)
    seen = Counter()
    for message in data.messages:
        kinds = [n.split(":", 1)[1] for n in message.note.split(",") if n.startswith("malformed:")]
        body = _payload(message.value)
        if not kinds:
            assert body is not None, message
            assert all(f in body for f in KEY_FIELDS[message.topic]), message
            if message.topic == "bpm":
                assert 30 <= body["heartrate"] <= 230, message
            continue
        (kind,) = kinds
        seen[kind] += 1
        if kind == "invalid_json":
            assert body is None, message
        elif kind == "missing_field":
            assert body is not None and not all(f in body for f in KEY_FIELDS[message.topic]), message
        elif kind == "heartrate_nonpositive":
            assert message.topic == "bpm" and body["heartrate"] <= 0, message
        else:
            assert message.topic == "bpm" and body["heartrate"] > 250, message
    # redelivered copies of malformed messages are counted once by the stats
    assert all(seen[k] >= data.stats.malformed[k] for k in MALFORMED_KINDS)


def test_redelivered_messages_are_identical_copies(noisy):
    _, data = noisy
    copies = Counter((m.topic, m.key, m.value, m.timestamp_us) for m in data.messages)
    redelivered = [m for m in data.messages if "redelivered" in m.note.split(",")]
    assert len(redelivered) == data.stats.redelivered
    assert all(copies[(m.topic, m.key, m.value, m.timestamp_us)] >= 2 for m in redelivered)


def test_late_messages_come_last_and_hours_after_their_event(noisy):
    rates, data = noisy
    first_late = next(i for i, m in enumerate(data.messages) if "late" in m.note)
    assert all("late" in m.note for m in data.messages[first_late:])
    for message in data.messages[first_late:]:
        body = _payload(message.value)
        event = body and (body.get("time") or body.get("timestamp"))
        if event is not None:
            delay = message.timestamp_us - int(Decimal(event) * 1_000_000)
            assert rates.late_hours[0] * 3600e6 <= delay <= rates.late_hours[1] * 3600e6


def test_epochs_mix_int_and_float_and_are_exact(noisy):
    _, data = noisy
    kinds = Counter()
    for message in data.messages:
        if "malformed" in message.note or "late" in message.note:
            continue
        body = json.loads(message.value, parse_float=Decimal)
        event = body.get("time", body.get("timestamp"))
        kinds[type(event).__name__] += 1
        text = re.search(r'"(?:time|timestamp)": ([^,}]+)', message.value).group(1)
        assert EPOCH_TEXT.match(text), text
        assert int(Decimal(text) * 1_000_000) == message.timestamp_us  # timestamp = event time, exactly
    assert kinds["int"] > 100 and kinds["Decimal"] > 100
    assert epoch_text(1700054500_123456, as_int=False) == "1700054500.123456"
    assert epoch_text(1700054500_500000, as_int=False) == "1700054500.5"
    assert epoch_text(1700054500_000000, as_int=True) == "1700054500"
    assert to_us(from_us(1700054500_123456)) == 1700054500_123456


def test_clean_stream_is_valid_and_in_time_order(clean):
    assert clean.stats.redelivered == clean.stats.late == clean.stats.out_of_order == 0
    times = [m.timestamp_us for m in clean.messages]
    assert times == sorted(times)
    for message in clean.messages:
        body = json.loads(message.value)
        key_field = "device_id" if message.topic == "bpm" else "user_id"
        assert message.key == str(body[key_field])


def test_heart_rate_is_1hz_per_device_and_floats(clean):
    readings = defaultdict(list)
    for message in clean.messages:
        if message.topic == "bpm":
            body = json.loads(message.value, parse_float=Decimal)
            assert isinstance(body["heartrate"], Decimal)  # a JSON float
            readings[body["device_id"]].append(Decimal(body["time"]))
    assert readings
    steps = Counter()
    for times in readings.values():
        assert len(times) == len(set(times)), "one reading per device and second"
        steps.update(b - a for a, b in zip(times, times[1:], strict=False))
    assert steps.most_common(1)[0][0] == 1


def test_sql_rows_follow_the_gym_app(noisy):
    _, data = noisy
    rows = data.sql_rows()
    users = rows["registered_users"]
    assert len(users) == 40 and len({u[0] for u in users}) == 40
    for user_id, _device_id, mac, registered in users:  # modified_at is stamped at write time, not planned
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
        registration = next(c for c in data.sql_changes if c.table == "registered_users" and c.row[0] == user_id)
        assert registration.at_us == to_us(registered)  # written when the member registers
    inserts = [c for c in data.sql_changes if c.table == "gym_logins" and c.action == "insert"]
    logouts = [c for c in data.sql_changes if c.action == "logout"]
    assert all(len(c.row) == 4 and c.row[3] is None and c.at_us == to_us(c.row[2]) for c in inserts)  # at entry
    assert all(c.at_us == to_us(c.row[0]) and c.row[0] > c.row[3] for c in logouts)  # at exit, logout > login
    assert [c.at_us for c in data.sql_changes] == sorted(c.at_us for c in data.sql_changes)
    visits = rows["gym_logins"]
    open_visits = [v for v in visits if v[3] is None]
    assert 0 < len(open_visits) < len(visits) / 2
    assert len(visits) == len(inserts) == len(logouts) + len(open_visits)


def test_workouts_mostly_happen_during_gym_visits(clean):
    rows = clean.sql_rows()
    mac_of = {u[0]: u[2] for u in rows["registered_users"]}
    visits = defaultdict(list)
    for mac, _gym, login, logout in rows["gym_logins"]:
        visits[mac].append((login, logout or datetime.max))
    starts = [json.loads(m.value) for m in clean.messages if m.topic == "workout"]
    starts = [w for w in starts if w["action"] == "start"]
    inside = sum(
        any(
            login <= from_us(int(Decimal(str(w["timestamp"])) * 1_000_000)) <= logout
            for login, logout in visits[mac_of[w["user_id"]]]
        )
        for w in starts
    )
    assert len(starts) > 10 and inside / len(starts) > 0.7
    stops = Counter(m.value.count('"stop"') for m in clean.messages if m.topic == "workout")
    assert stops[1] <= len(starts)


def test_profile_cdc_has_new_update_delete_and_recreation(noisy):
    _, data = noisy
    events = defaultdict(list)
    for message in data.messages:
        body = _payload(message.value) if message.topic == "user_info" else None
        if body and "update_type" in body and "malformed" not in message.note:
            events[body["user_id"]].append((body["timestamp"], body["update_type"], body))
    kinds = Counter(kind for history in events.values() for _, kind, _ in history)
    assert kinds["new"] >= 35 and kinds["update"] > 0 and kinds["delete"] > 0
    recreated = [
        u
        for u, h in events.items()
        if any(k == "new" for _, k, _ in sorted(h)[1:]) and any(k == "delete" for _, k, _ in h)
    ]
    assert recreated
    body = next(iter(events.values()))[0][2]
    assert set(body) == {
        "user_id",
        "update_type",
        "timestamp",
        "dob",
        "sex",
        "gender",
        "first_name",
        "last_name",
        "address",
    }
    assert body["dob"] is None or re.fullmatch(r"\d{2}/\d{2}/\d{4}", body["dob"])
    assert isinstance(body["address"]["zip"], int)


def test_rates_and_sizes_are_validated():
    with pytest.raises(ConfigError, match="malformed"):
        SimulationRates(malformed=1.5)
    with pytest.raises(ConfigError, match="workout_minutes"):
        SimulationRates(workout_minutes=(10.0, 5.0))
    with pytest.raises(ConfigError, match="at least 1"):
        generate(members=0, gyms=1, days=1, seed=1, start=START)


def test_default_start_keeps_the_run_in_the_past():
    now = datetime(2024, 5, 10, 3, 4, 5, tzinfo=UTC)
    start = default_start(days=3, now=now)
    assert start == datetime(2024, 5, 6, tzinfo=UTC)
    assert start + timedelta(days=3, hours=SimulationRates().late_hours[1]) < now


def test_modified_at_is_wall_clock_utc_and_strictly_increasing():
    from ingestion.azure_sql import ModifiedAtClock

    frozen = datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    readings = iter([frozen, frozen, frozen - timedelta(seconds=5), frozen + timedelta(seconds=1)])
    clock = ModifiedAtClock(now=lambda: next(readings))
    stamps = [clock.stamp() for _ in range(4)]
    assert stamps == [
        datetime(2026, 3, 1, 12, 0, 0, 999_999),
        datetime(2026, 3, 1, 12, 0, 1),  # the same microsecond again: one later
        datetime(2026, 3, 1, 12, 0, 1, 1),  # the wall clock stepped back: still later
        datetime(2026, 3, 1, 12, 0, 1, 999_999),
    ]
    before = datetime.now(UTC).replace(tzinfo=None)
    real = ModifiedAtClock()
    many = [real.stamp() for _ in range(1000)]
    assert before <= many[0] and all(a < b for a, b in zip(many, many[1:], strict=False))
    assert many[-1] - datetime.now(UTC).replace(tzinfo=None) < timedelta(seconds=1)
