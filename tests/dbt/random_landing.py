"""Seeded random landing data for the incremental-equals-full-refresh test.

Messages get their (partition, offset) once, in delivery order (event times shuffled, so late
and out-of-order data occur), then the landing zone is written either in `n_batches` runs
(contiguous offset ranges per partition, SQL rows spread over the extracts, a visit's logout
version never before its login version) or all at once. Both layouts hold exactly the same
messages with the same (partition, offset) and the same SQL rows.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from landing_fixtures import LandingWriter

BASE = 1_700_000_000


@dataclass
class Dataset:
    registered_users: list[tuple[int, dict]] = field(default_factory=list)  # (min batch rank, row)
    gym_logins: list[tuple[int, dict]] = field(default_factory=list)
    messages: dict[str, list[str | None]] = field(default_factory=lambda: defaultdict(list))
    partitions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def _epoch(rng: random.Random, t: float) -> float | int:
    """Half the epochs as ints, half as floats with up to microsecond decimals."""
    if rng.random() < 0.5:
        return int(t)
    return round(t + rng.random(), rng.choice([1, 3, 6]))


def generate(seed: int, n_users: int = 14) -> Dataset:
    rng = random.Random(seed)
    ds = Dataset()
    pending: dict[str, list[tuple[int, str | None]]] = defaultdict(list)  # topic -> (partition, value)

    def send(topic: str, partition: int, value) -> None:
        pending[topic].append((partition, value if isinstance(value, str) or value is None else json.dumps(value)))

    for i in range(n_users):
        user_id, device_id, mac = 30_000 + i, 400_000 + i, f"bb:00:00:00:00:{i:02x}"
        if i % 7 != 6:  # some users never register
            reg = BASE + i * 100
            ds.registered_users.append(
                (
                    0,
                    dict(
                        user_id=user_id,
                        device_id=device_id,
                        mac_address=mac,
                        registration_timestamp=reg,
                        modified_at=reg,
                    ),
                )
            )
            if rng.random() < 0.3:  # a later registration of the same user must not win
                ds.registered_users.append(
                    (
                        0,
                        dict(
                            user_id=user_id,
                            device_id=device_id + 1000,
                            mac_address=mac,
                            registration_timestamp=reg + 50,
                            modified_at=reg + 50,
                        ),
                    )
                )
        # CDC events with distinct or tied timestamps, some redelivered
        t = BASE + 1000 + i
        for k in range(rng.randint(1, 5)):
            kind = "new" if k == 0 else rng.choice(["update", "update", "delete", "new"])
            t += rng.choice([0, 1, 10, 100.5])
            event = {"user_id": user_id, "update_type": kind, "timestamp": _epoch(rng, t)}
            if kind != "delete":
                event.update(
                    dob=rng.choice(
                        [None, f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1930, 2012)}"]
                    ),
                    sex="M",
                    gender=rng.choice(["male", "female", "nb"]),
                    first_name=f"f{k}",
                    last_name="l",
                    address={
                        "street_address": f"{k} St",
                        "city": rng.choice(["A", "B", "C"]),
                        "state": "CA",
                        "zip": 90000 + k,
                    },
                )
            for _ in range(rng.choice([1, 1, 2])):
                send("user_info", user_id % 2, event)
        # workout sessions, gym visits around them, readings during and around them
        for s in range(rng.randint(1, 3)):
            start = BASE + 50_000 + i * 20_000 + s * 5_000 + rng.random()
            duration = rng.choice([300.25, 900, 1800.5, 3 * 3600, 3 * 3600 + 1, 4 * 3600])
            session_id, workout_id = i * 10 + s, rng.randint(1, 4)
            start_e, stop_e = _epoch(rng, start), _epoch(rng, start + duration)
            for action, ts in [("start", start_e), ("stop", stop_e)] + (
                [("stop", stop_e + 60)] if rng.random() < 0.3 else []
            ):
                for _ in range(rng.choice([1, 1, 2])):
                    send(
                        "workout",
                        user_id % 2,
                        {
                            "user_id": user_id,
                            "workout_id": workout_id,
                            "timestamp": ts,
                            "action": action,
                            "session_id": session_id,
                        },
                    )
            login = int(start) - rng.randint(0, 600)
            logout = int(start + duration) + rng.randint(-100, 600)
            ds.gym_logins.append(
                (0, dict(mac_address=mac, gym=rng.randint(1, 3), login=login, logout=None, modified_at=login))
            )
            ds.gym_logins.append(
                (
                    1,
                    dict(
                        mac_address=mac,
                        gym=ds.gym_logins[-1][1]["gym"],
                        login=login,
                        logout=logout,
                        modified_at=max(logout, login + 1),
                    ),
                )
            )
            readings = [start_e, stop_e] + [
                start + rng.uniform(-300, min(duration, 7200) + 300) for _ in range(rng.randint(3, 12))
            ]
            for r in readings:
                hr = rng.choice([rng.randint(50, 190), rng.randint(50, 190), 0, None])
                for _ in range(rng.choice([1, 1, 2])):
                    send(
                        "bpm",
                        device_id % 2,
                        {"device_id": device_id, "time": r if isinstance(r, int) else round(r, 6), "heartrate": hr},
                    )
            if rng.random() < 0.2:  # a conflicting redelivery: the last delivery wins
                send(
                    "bpm",
                    device_id % 2,
                    {
                        "device_id": device_id,
                        "time": readings[-1] if isinstance(readings[-1], int) else round(readings[-1], 6),
                        "heartrate": rng.randint(50, 190),
                    },
                )
    for topic in ("user_info", "workout", "bpm"):
        send(topic, 0, '{"broken": ')
        send(topic, 1, {"unexpected": True})
    # delivery order: shuffled, so event times arrive out of order and late
    for topic, items in pending.items():
        rng.shuffle(items)
        for partition, value in items:
            ds.partitions[topic].append(partition)
            ds.messages[topic].append(value)
    return ds


def write(ds: Dataset, writer: LandingWriter, n_batches: int, seed: int) -> list:
    """Return a list of callables, one per run, each landing that run's files."""
    rng = random.Random(seed * 1000 + n_batches)
    runs: list[list] = [[] for _ in range(n_batches)]

    # Kafka: per (topic, partition) the offset sequence is cut into contiguous chunks
    for topic, values in ds.messages.items():
        by_partition: dict[int, list[tuple[int, str | None]]] = defaultdict(list)
        for p, v in zip(ds.partitions[topic], values):
            by_partition[p].append((len(by_partition[p]), v))
        for p, msgs in by_partition.items():
            cuts = sorted(rng.sample(range(1, len(msgs)), min(n_batches - 1, len(msgs) - 1))) if n_batches > 1 else []
            bounds = [0, *cuts, len(msgs)]
            for b in range(len(bounds) - 1):
                chunk = msgs[bounds[b] : bounds[b + 1]]
                if chunk:
                    runs[b].append(("kafka", topic, p, chunk))

    # SQL: rows spread over the runs; a later version (rank 1) never before its first version
    for table, rows in (("registered_users", ds.registered_users), ("gym_logins", ds.gym_logins)):
        assigned: dict[int, list[dict]] = defaultdict(list)
        last = 0
        for rank, row in rows:
            b = rng.randrange(n_batches) if rank == 0 else rng.randrange(last, n_batches)
            last = b
            assigned[b].append(row)
            if rng.random() < 0.15:  # overlap window: re-extracted identically in a later run
                assigned[rng.randrange(b, n_batches)].append(row)
        for b, batch_rows in assigned.items():
            runs[b].append(("sql", table, batch_rows))

    def make_run(items):
        def land():
            for item in items:
                if item[0] == "kafka":
                    _, topic, p, chunk = item
                    writer.kafka_file(
                        topic,
                        [v for _, v in chunk],
                        partition=p,
                        offsets=[o for o, _ in chunk],
                        keys=[None] * len(chunk),
                    )
                else:
                    _, table, batch_rows = item
                    writer.sql_batch(table, batch_rows)

        return land

    return [make_run(items) for items in runs]
