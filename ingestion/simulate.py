"""A deterministic simulator of the two sources: the gym app's SQL tables and the three Kafka topics.

Two layers:

* :func:`plan_world` and :func:`iter_messages` (materialised by :func:`generate`) are pure: from a
  seed they build members, gym visits, workouts, profile changes and 1 Hz heart-rate readings, then
  make the stream as messy as CONTRACT 1.2 allows (redelivered, out-of-order, late and malformed
  messages). No broker, no database, no wall clock, no global random state: the same arguments give
  the same SQL changes and the same message sequence, byte for byte.
* :func:`simulate` writes the SQL changes through :mod:`ingestion.azure_sql` (inserts at entry,
  logout updates at exit) and produces the messages to the configured topics, returning a
  :class:`SimulationSummary` of counts.

``modified_at`` is what the source application stamps when it writes a row: the wall-clock UTC time
of the write (strictly increasing within a run), not a simulated time. The business times
(registration_timestamp, login, logout, the Kafka event times) are simulated. So a run after a
landing writes rows after that landing's watermark, as a real gym app would, and the next extract
takes all of them, whatever simulated day they describe. The pure layer therefore holds no
``modified_at``: it only exists once a row is written.

Times are integer microseconds since the epoch throughout; JSON epochs are written from those
integers as text (``1700050300`` or ``1700050300.123456``), so no value ever passes through a float.
The Kafka message timestamp is the simulated time the message was produced: the event time, or for a
late message the event time plus some hours.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pyodbc

from ingestion import azure_sql
from ingestion.config import Settings
from ingestion.errors import ConfigError, FitLakeError
from ingestion.kafka import Message, Progress, ensure_topics, produce_messages, topic_names
from ingestion.source_tables import GYM_LOGINS, REGISTERED_USERS

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1)
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

MALFORMED_KINDS = ("invalid_json", "missing_field", "heartrate_nonpositive", "heartrate_absurd")
# Fields without which a record cannot be keyed or placed in time.
KEY_FIELDS = {
    "user_info": ("user_id", "update_type", "timestamp"),
    "workout": ("user_id", "workout_id", "session_id", "action", "timestamp"),
    "bpm": ("device_id", "time"),
}

# --- parameters and results -------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationRates:
    """How often things happen. Stream defects are shares of messages; the rest are per member or visit."""

    redelivered: float = 0.01  # share of messages produced twice
    out_of_order: float = 0.02  # share of messages moved later in the stream
    out_of_order_window: int = 200  # ... by up to this many messages
    late: float = 0.005  # share of messages held back and produced after everything else
    late_hours: tuple[float, float] = (2.0, 12.0)  # ... this many hours after their event time
    malformed: float = 0.002  # share of messages broken (invalid JSON, missing key field, bad heartrate)
    visit: float = 0.5  # chance a member visits a gym on a given day
    other_gym: float = 0.15  # chance a visit is not to the member's home gym
    second_workout: float = 0.2  # chance a visit holds two workouts
    home_workout: float = 0.1  # chance a member works out outside a gym on a given day
    open_visit: float = 0.03  # visits whose logout never comes
    unfinished_workout: float = 0.03  # starts without a stop
    bpm_outside_workout: float = 0.2  # chance a member's device sends a burst of readings outside a workout, per day
    profile_update: float = 0.3  # chance a member's profile is updated during the run
    profile_delete: float = 0.05  # chance a member's profile is deleted
    recreate_after_delete: float = 0.5  # chance a deleted profile comes back with a new `new`
    missing_dob: float = 0.02  # profiles without a date of birth
    registered_during_run: float = 0.2  # members who register during the run rather than before it
    workout_minutes: tuple[float, float] = (20.0, 60.0)

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, tuple):
                low, high = value
                if not 0 < low <= high:
                    raise ConfigError(f"simulation rate {name}={value} must be a range 0 < low <= high")
            elif name == "out_of_order_window":
                if value < 1:
                    raise ConfigError(f"simulation rate {name}={value} must be at least 1")
            elif not 0.0 <= value <= 1.0:
                raise ConfigError(f"simulation rate {name}={value} must be a share between 0 and 1")
        if self.workout_minutes[1] > 150:
            raise ConfigError("workout_minutes above 150 do not fit a gym visit; use at most 150")


class SqlChange(NamedTuple):
    at_us: int  # when the source application writes it, in simulated time (the order of the writes)
    table: str
    action: str  # "insert" or "logout"
    # insert: the row in table column order without modified_at (stamped at write time);
    # logout: (logout, mac_address, gym, login)
    row: tuple


@dataclass
class StreamStats:
    messages: Counter = field(default_factory=Counter)  # per contract topic, as produced
    malformed: Counter = field(default_factory=Counter)  # per kind
    redelivered: int = 0
    late: int = 0
    out_of_order: int = 0


@dataclass
class SimulatedData:
    sql_changes: list[SqlChange]
    messages: list[Message]
    stats: StreamStats

    def sql_rows(self) -> dict[str, list[tuple]]:
        """The final state of the SQL tables after every change, in insertion order, without modified_at."""
        users = [c.row for c in self.sql_changes if c.table == "registered_users"]
        visits: dict[tuple, list] = {}
        for change in self.sql_changes:
            if change.table != "gym_logins":
                continue
            if change.action == "insert":
                visits[(change.row[0], change.row[1], change.row[2])] = list(change.row)
            else:
                logout, mac, gym, login = change.row
                visits[(mac, gym, login)][3] = logout
        return {"registered_users": users, "gym_logins": [tuple(v) for v in visits.values()]}


@dataclass
class SimulationSummary:
    seed: int
    members: int
    gyms: int
    days: int
    start: str
    rows: dict[str, int] = field(default_factory=dict)  # SQL rows written per table
    logout_updates: int = 0
    open_visits: int = 0
    messages: dict[str, int] = field(default_factory=dict)  # per configured topic name
    malformed: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0
    late: int = 0
    out_of_order: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return "; ".join(self.lines())

    def lines(self) -> list[str]:
        out = [f"sql:{t}: {n} rows" for t, n in self.rows.items()]
        out.append(f"sql:gym_logins: {self.logout_updates} logout updates, {self.open_visits} visits still open")
        out += [f"kafka:{t}: {n} messages" for t, n in self.messages.items()]
        out.append(
            f"defects: {sum(self.malformed.values())} malformed {dict(self.malformed)}, "
            f"{self.redelivered} redelivered, {self.out_of_order} out of order, {self.late} late"
        )
        out.append(
            f"simulated {self.members} members, {self.gyms} gyms, {self.days} days from {self.start} "
            f"(seed {self.seed}) in {self.seconds:.1f}s"
        )
        return out


# --- the world --------------------------------------------------------------------------------

FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farah",
    "Gustavo",
    "Hana",
    "Ines",
    "Jamal",
    "Kai",
    "Lena",
    "Mateo",
    "Nia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tomoko",
    "Uma",
    "Victor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
)
LAST_NAMES = (
    "Abbott",
    "Berg",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quint",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Usman",
    "Vargas",
    "Weber",
    "Xu",
    "Young",
    "Zimmer",
)
STREETS = (
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Pine St",
    "Elm St",
    "Lakeview Rd",
    "Hillcrest Ave",
    "Sunset Blvd",
    "River Rd",
)
CITIES = (
    ("Austin", "TX", 78701),
    ("Boston", "MA", 2108),
    ("Chicago", "IL", 60601),
    ("Denver", "CO", 80202),
    ("Miami", "FL", 33101),
    ("Portland", "OR", 97201),
    ("Seattle", "WA", 98101),
    ("Phoenix", "AZ", 85001),
    ("Atlanta", "GA", 30301),
    ("Madison", "WI", 53703),
)


@dataclass
class Workout:
    user_id: int
    device_id: int
    workout_id: int
    session_id: int
    start_us: int
    stop_us: int
    stopped: bool  # False: the stop event never comes


@dataclass
class Member:
    user_id: int
    device_id: int
    mac_address: str
    registered_us: int
    home_gym: int
    resting_bpm: float
    max_bpm: float
    integer_clock: bool  # the device sends whole-second times
    phase_us: int  # sub-second offset of the device's 1 Hz clock


@dataclass
class World:
    seed: int
    start_us: int
    end_us: int
    days: int
    members: list[Member]
    visits: list[tuple]  # (mac, gym, login_us, logout_us or None)
    workouts: list[Workout]
    bursts: list[tuple]  # (device_id, start_us, seconds, base bpm)
    profile_events: list[tuple]  # (at_us, user_id, update_type, profile dict)


def to_us(value: datetime) -> int:
    """A datetime (naive = UTC) as integer microseconds since the epoch."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def from_us(us: int) -> datetime:
    """Integer epoch microseconds as a naive UTC datetime (what the SQL source stores)."""
    return EPOCH + timedelta(microseconds=us)


def epoch_text(us: int, as_int: bool) -> str:
    """Epoch seconds as JSON number text, exactly: ``1700050300`` or ``1700050300.1234``."""
    seconds, micros = divmod(us, SECOND)
    if as_int:
        return str(seconds)
    fraction = f"{micros:06d}".rstrip("0") or "0"
    return f"{seconds}.{fraction}"


def _mac(rng: random.Random, taken: set) -> str:
    while True:
        mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
        if mac not in taken:
            taken.add(mac)
            return mac


def _profile(rng: random.Random, user_id: int, at_us: int, rates: SimulationRates) -> dict:
    sex = rng.choice(("F", "M"))
    gender = sex if rng.random() < 0.93 else rng.choice(("NB", "F" if sex == "M" else "M"))
    age_days = rng.randrange(14 * 365, 90 * 365)
    dob = from_us(at_us) - timedelta(days=age_days)
    city, state, zip_code = rng.choice(CITIES)
    return {
        "first_name": rng.choice(FIRST_NAMES),
        "last_name": rng.choice(LAST_NAMES),
        "sex": sex,
        "gender": gender,
        "dob": None if rng.random() < rates.missing_dob else dob.strftime("%m/%d/%Y"),
        "address": {
            "street_address": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}",
            "city": city,
            "state": state,
            "zip": zip_code,
        },
    }


def _changed_profile(rng: random.Random, profile: dict) -> dict:
    changed = json.loads(json.dumps(profile))
    what = rng.choice(("address", "last_name", "gender", "first_name"))
    if what == "address":
        city, state, zip_code = rng.choice(CITIES)
        changed["address"] = {
            "street_address": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}",
            "city": city,
            "state": state,
            "zip": zip_code,
        }
    elif what == "last_name":
        changed["last_name"] = rng.choice(LAST_NAMES)
    elif what == "gender":
        changed["gender"] = rng.choice(("F", "M", "NB"))
    else:
        changed["first_name"] = rng.choice(FIRST_NAMES)
    return changed


def plan_world(
    members: int, gyms: int, days: int, seed: int, start: datetime, rates: SimulationRates | None = None
) -> World:
    """Members, visits, workouts and profile changes: everything except the 1 Hz readings."""
    rates = rates or SimulationRates()
    if members < 1 or gyms < 1 or days < 1:
        raise ConfigError(f"members ({members}), gyms ({gyms}) and days ({days}) must each be at least 1")
    if members >= 1_000_000:
        raise ConfigError(f"members={members}: the simulator supports up to 999,999 members per run")
    rng = random.Random(seed)
    start_us = to_us(start)
    end_us = start_us + days * DAY
    block = rng.randrange(1, 1000)  # separates the ids of runs with different seeds
    macs: set = set()
    people: list[Member] = []
    for i in range(members):
        if rng.random() < rates.registered_during_run:
            registered = start_us + rng.randrange(0, days * DAY - 6 * HOUR)
        else:
            registered = start_us - rng.randrange(HOUR, 30 * DAY)
        resting = rng.uniform(52, 80)
        people.append(
            Member(
                user_id=block * 1_000_000 + 1 + i,
                device_id=block * 1_000_000 + 500_001 + i,
                mac_address=_mac(rng, macs),
                registered_us=registered,
                home_gym=rng.randrange(1, gyms + 1),
                resting_bpm=resting,
                max_bpm=rng.uniform(150, 195),
                integer_clock=rng.random() < 0.3,
                phase_us=rng.randrange(SECOND),
            )
        )

    # Profile CDC: the stream starts with a snapshot at `start` for members who registered before it.
    profile_events = []
    for m in people:
        at = max(m.registered_us, start_us) + rng.randrange(1 * SECOND, 5 * MINUTE)
        profile = _profile(rng, m.user_id, at, rates)
        profile_events.append((at, m.user_id, "new", profile))
        if rng.random() < rates.profile_update:
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(at + MINUTE, max(end_us, at + 2 * MINUTE))
                profile = _changed_profile(rng, profile)
                profile_events.append((at, m.user_id, "update", profile))
        if rng.random() < rates.profile_delete:
            at = rng.randrange(at + MINUTE, max(end_us, at + 2 * MINUTE))
            profile_events.append((at, m.user_id, "delete", profile))
            if rng.random() < rates.recreate_after_delete:
                at = rng.randrange(at + MINUTE, max(end_us, at + 2 * MINUTE))
                profile = _profile(rng, m.user_id, at, rates)
                profile_events.append((at, m.user_id, "new", profile))
    profile_events = [e for e in profile_events if e[0] < end_us]

    visits, workouts, bursts = [], [], []
    sessions: Counter = Counter()

    def overlaps(busy: list, begin: int, end: int) -> bool:
        return any(begin < b_end + MINUTE and b_begin < end + MINUTE for b_begin, b_end in busy)

    def add_workout(m: Member, earliest: int, latest_end: int, busy: list, tries: int = 1) -> int | None:
        low, high = rates.workout_minutes
        length = int(rng.uniform(low, high) * MINUTE)
        if latest_end - earliest < length + MINUTE:
            return None
        for _ in range(tries):
            begin = rng.randrange(earliest, latest_end - length)
            if not m.integer_clock and rng.random() < 0.5:
                begin -= begin % SECOND  # whole-second starts happen too
            if not overlaps(busy, begin, begin + length):
                break
        else:
            return None
        busy.append((begin, begin + length))
        sessions[m.user_id] += 1
        workouts.append(
            Workout(
                m.user_id,
                m.device_id,
                rng.randint(1, 12),
                sessions[m.user_id],
                begin,
                begin + length,
                stopped=rng.random() >= rates.unfinished_workout,
            )
        )
        return begin + length

    for day in range(days):
        day_us = start_us + day * DAY
        for m in people:
            opens = max(day_us + 5 * HOUR, m.registered_us + MINUTE)
            if opens >= day_us + 20 * HOUR:
                continue
            exercising: list = []  # this member's workouts today: one device, one reading per second
            occupied: list = []  # ... and gym visits
            if rng.random() < rates.visit:
                gym = m.home_gym if rng.random() >= rates.other_gym else rng.randrange(1, gyms + 1)
                login = rng.randrange(opens, day_us + 21 * HOUR)
                stay = rng.randrange(
                    int(max(rates.workout_minutes[1] + 10, 30) * MINUTE),
                    int(max(rates.workout_minutes[1] * 2 + 20, 120) * MINUTE),
                )
                logout = min(login + stay, day_us + DAY - MINUTE)
                free = login + rng.randrange(MINUTE, 10 * MINUTE)
                for _ in range(2 if rng.random() < rates.second_workout else 1):
                    done = add_workout(m, free, logout - MINUTE, exercising)
                    if done is None:
                        break
                    free = done + rng.randrange(MINUTE, 5 * MINUTE)
                closed = rng.random() >= rates.open_visit
                visits.append((m.mac_address, gym, login, logout if closed else None))
                occupied.append((login, logout))
            if rng.random() < rates.home_workout:
                add_workout(m, opens, day_us + 23 * HOUR, occupied + exercising, tries=5)
            if rng.random() < rates.bpm_outside_workout:
                seconds = rng.randrange(60, 600)
                for _ in range(5):
                    begin = rng.randrange(opens, day_us + 23 * HOUR)
                    if not overlaps(exercising, begin, begin + seconds * SECOND):
                        bursts.append((m.device_id, begin, seconds, m.resting_bpm))
                        exercising.append((begin, begin + seconds * SECOND))
                        break
    return World(seed, start_us, end_us, days, people, visits, workouts, bursts, profile_events)


def sql_changes(world: World) -> list[SqlChange]:
    """The source application's writes, in the order it makes them."""
    changes = []
    for m in world.members:
        registered = from_us(m.registered_us)
        changes.append(
            SqlChange(
                m.registered_us,
                "registered_users",
                "insert",
                (m.user_id, m.device_id, m.mac_address, registered),
            )
        )
    for mac, gym, login_us, logout_us in world.visits:
        login = from_us(login_us)
        changes.append(SqlChange(login_us, "gym_logins", "insert", (mac, gym, login, None)))
        if logout_us is not None and logout_us < world.end_us:
            changes.append(SqlChange(logout_us, "gym_logins", "logout", (from_us(logout_us), mac, gym, login)))
    changes.sort(key=lambda c: c.at_us)
    return changes


# --- the message stream -----------------------------------------------------------------------


def _user_info_value(user_id: int, update_type: str, at_us: int, profile: dict, as_int: bool) -> str:
    body = {"user_id": user_id, "update_type": update_type, "timestamp": "\0TS\0", **profile}
    return json.dumps(body).replace('"\\u0000TS\\u0000"', epoch_text(at_us, as_int))


def _workout_value(w: Workout, action: str, at_us: int, as_int: bool) -> str:
    return (
        f'{{"user_id": {w.user_id}, "workout_id": {w.workout_id}, "timestamp": {epoch_text(at_us, as_int)}, '
        f'"action": "{action}", "session_id": {w.session_id}}}'
    )


def _bpm_value(device_id: int, at_us: int, as_int: bool, heartrate: float) -> str:
    return f'{{"device_id": {device_id}, "time": {epoch_text(at_us, as_int)}, "heartrate": {heartrate!r}}}'


def _readings(rng: random.Random, m: Member, begin_us: int, seconds: int, base: float, peak: float, out: list) -> None:
    """1 Hz readings for ``seconds`` seconds: a ramp from base to peak and noise; (time, key, value)."""
    first = begin_us - begin_us % SECOND + (0 if m.integer_clock else m.phase_us)
    if first < begin_us:
        first += SECOND
    key = str(m.device_id)
    ramp = max(seconds / 6, 1.0)
    gauss = rng.gauss
    for k in range(seconds):
        level = base + (peak - base) * min(k / ramp, 1.0)
        heartrate = round(level + gauss(0, 3.0), 1)
        at = first + k * SECOND
        out.append((at, "bpm", key, _bpm_value(m.device_id, at, m.integer_clock, heartrate)))


def _malformed(rng: random.Random, topic: str, value: str) -> tuple[str, str]:
    kinds = ["invalid_json", "missing_field"]
    if topic == "bpm":
        kinds += ["heartrate_nonpositive", "heartrate_absurd"]
    kind = rng.choice(kinds)
    if kind == "invalid_json":
        how = rng.randrange(3)
        if how == 0:
            return kind, value[: rng.randrange(1, len(value) - 1)]  # truncated
        if how == 1:
            return kind, value.replace('"', "'", 2)  # single quotes
        return kind, "\ufffd" + value[1:-1] + ",}"
    body = json.loads(value, parse_float=str, parse_int=str)
    if kind == "missing_field":
        del body[rng.choice(KEY_FIELDS[topic])]
    elif kind == "heartrate_nonpositive":
        body["heartrate"] = rng.choice(("0.0", "-1.0", f"-{rng.randrange(1, 200)}.0"))
    else:
        body["heartrate"] = rng.choice(("999.0", "1200.5", "65535.0", f"{rng.randrange(301, 5000)}.0"))
    return kind, _dump_raw(body)


def _dump_raw(body: dict) -> str:
    """Re-serialise a payload parsed with numbers kept as their original text."""
    parts = []
    for name, value in body.items():
        if isinstance(value, dict):
            text = _dump_raw(value)
        elif isinstance(value, str) and _is_number(value):
            text = value
        else:
            text = json.dumps(value)
        parts.append(f"{json.dumps(name)}: {text}")
    return "{" + ", ".join(parts) + "}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text[:1] in "-0123456789"


def _chunk_events(world: World, day: int, rng: random.Random) -> list[tuple]:
    """Every event whose activity starts on ``day`` (workouts never cross midnight), sorted by time."""
    day_start = world.start_us + day * DAY
    day_end = day_start + DAY
    members = {m.user_id: m for m in world.members}
    devices = {m.device_id: m for m in world.members}
    events: list[tuple] = []  # (time_us, topic, key, value)
    for at, user_id, update_type, profile in world.profile_events:
        if day_start <= at < day_end:
            as_int = rng.random() < 0.3
            if as_int:
                at -= at % SECOND
            events.append((at, "user_info", str(user_id), _user_info_value(user_id, update_type, at, profile, as_int)))
    for w in world.workouts:
        if not day_start <= w.start_us < day_end:
            continue
        m = members[w.user_id]
        as_int = w.start_us % SECOND == 0
        events.append((w.start_us, "workout", str(w.user_id), _workout_value(w, "start", w.start_us, as_int)))
        if w.stopped:
            stop = w.stop_us - (w.stop_us % SECOND if as_int else 0)
            events.append((stop, "workout", str(w.user_id), _workout_value(w, "stop", stop, as_int)))
        seconds = (w.stop_us - w.start_us) // SECOND
        _readings(rng, m, w.start_us, seconds, m.resting_bpm + 10, rng.uniform(0.7, 0.95) * m.max_bpm, events)
    for device_id, begin, seconds, base in world.bursts:
        if day_start <= begin < day_end:
            _readings(rng, devices[device_id], begin, seconds, base, base + rng.uniform(0, 25), events)
    events = [e for e in events if e[0] < world.end_us]
    events.sort(key=lambda e: e[0])
    return events


def iter_messages(world: World, rates: SimulationRates, stats: StreamStats | None = None) -> Iterator[Message]:
    """The message stream in produce order, one simulated day at a time; late messages come last."""
    stats = stats if stats is not None else StreamStats()
    late: list[tuple] = []
    sequence = 0
    for day in range(world.days):
        rng = random.Random(world.seed * 1_000_003 + day + 1)
        stream: list[tuple] = []  # (position, time_us, topic, key, value, notes)
        for at, topic, key, value in _chunk_events(world, day, rng):
            notes = []
            if rng.random() < rates.malformed:
                kind, value = _malformed(rng, topic, value)
                stats.malformed[kind] += 1
                notes.append(f"malformed:{kind}")
            copies = 1
            if rng.random() < rates.redelivered:
                copies = 2
                stats.redelivered += 1
            if rng.random() < rates.late:  # held back: every copy is produced hours later, at the end
                produced = at + int(rng.uniform(*rates.late_hours) * HOUR)
                for copy in range(copies):
                    stats.late += 1
                    sequence += 1
                    late.append(
                        (
                            produced,
                            sequence,
                            topic,
                            key,
                            value,
                            ",".join(notes + (["redelivered"] if copy else []) + ["late"]),
                        )
                    )
                continue
            for copy in range(copies):
                copy_notes = notes + (["redelivered"] if copy else [])
                position = float(len(stream))
                if copy or rng.random() < rates.out_of_order:
                    position += rng.uniform(1.5, rates.out_of_order_window + 0.5)
                    if not copy:
                        stats.out_of_order += 1
                        copy_notes = copy_notes + ["out_of_order"]
                stream.append((position, at, topic, key, value, ",".join(copy_notes)))
        stream.sort(key=lambda s: s[0])
        for _, at, topic, key, value, note in stream:
            stats.messages[topic] += 1
            yield Message(topic, key, value, at, note)
    late.sort(key=lambda item: (item[0], item[1]))
    for produced, _, topic, key, value, note in late:
        stats.messages[topic] += 1
        yield Message(topic, key, value, produced, note)


def generate(
    members: int, gyms: int, days: int, seed: int, start: datetime, rates: SimulationRates | None = None
) -> SimulatedData:
    """The whole simulation as plain data (tests; small runs). :func:`simulate` streams instead."""
    rates = rates or SimulationRates()
    world = plan_world(members, gyms, days, seed, start, rates)
    stats = StreamStats()
    messages = list(iter_messages(world, rates, stats))
    return SimulatedData(sql_changes(world), messages, stats)


# --- writing to the sources -------------------------------------------------------------------


def apply_sql_changes(
    settings: Settings, changes: Iterable[SqlChange], progress: Progress | None = None, batch_rows: int = 5_000
) -> dict[str, int]:
    """Write the changes in order, batching runs of the same kind; returns rows inserted and updated.

    Each row is stamped with ``modified_at`` (wall-clock UTC, strictly increasing) as its batch is
    written; every batch commits on its own, as a source application's writes do.
    """
    from ingestion.stack import ensure_source_tables

    ensure_source_tables(settings)
    dialect = azure_sql.source_dialect(settings)
    schema = settings.source_schema
    counts = Counter()
    conn = azure_sql.connect_source(settings, autocommit=False)
    tables = {"registered_users": REGISTERED_USERS, "gym_logins": GYM_LOGINS}
    clock = azure_sql.ModifiedAtClock()

    def flush(kind: tuple | None, rows: list) -> None:
        if not rows:
            return
        table, action = kind
        try:
            if action == "insert":
                stamped = [(*row, clock.stamp()) for row in rows]
                azure_sql.insert_rows(conn, dialect, schema, tables[table], stamped)
            else:
                stamped = [(logout, clock.stamp(), mac, gym, login) for logout, mac, gym, login in rows]
                azure_sql.set_gym_logout(conn, dialect, schema, stamped)
        except pyodbc.Error as exc:
            # drivers differ: SQL Server and PostgreSQL raise IntegrityError (SQLSTATE 23xxx), the
            # SQLite driver a plain Error with HY000 and "UNIQUE constraint failed"
            if not isinstance(exc, pyodbc.IntegrityError) and "constraint" not in str(exc).lower():
                raise
            raise FitLakeError(
                f"simulated rows clash with rows already in {table} ({exc.args[-1]}); the source already "
                "holds a simulation with this seed: use another --seed or a fresh source"
            ) from exc
        counts[f"{table}:{action}"] += len(rows)
        if progress:
            progress(len(rows))

    try:
        kind, rows = None, []
        for change in changes:
            this = (change.table, change.action)
            if this != kind or len(rows) >= batch_rows:
                flush(kind, rows)
                kind, rows = this, []
            rows.append(change.row)
        flush(kind, rows)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return dict(counts)


def default_start(days: int, now: datetime) -> datetime:
    """Midnight UTC ``days + 1`` days before ``now``: the run and its late messages (at most a day) lie in the past.

    Kafka 4 rejects timestamps more than an hour ahead of the broker clock, and brokers drop data older
    than their retention (7 days by default), so simulated time belongs in the recent past.
    """
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days + 1)


def simulate(
    settings: Settings,
    members: int = 50,
    gyms: int = 3,
    days: int = 7,
    seed: int = 42,
    start: datetime | None = None,
    rates: SimulationRates | None = None,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Write a simulated run into the SQL source and the Kafka topics; ``progress(n)`` gets increments.

    ``start`` (UTC; naive means UTC) is required: there is no wall clock in the data. Pick it so the
    whole run, late messages included, lies in the past, e.g. midnight ``days + 1`` days ago.
    """
    if start is None:
        raise ConfigError(
            "simulate needs a start time (UTC), e.g. --start 2024-01-01T00:00:00Z; "
            "simulate.default_start(days, now) gives a sensible recent one"
        )
    rates = rates or SimulationRates()
    started = time.monotonic()
    world = plan_world(members, gyms, days, seed, start, rates)
    summary = SimulationSummary(
        seed=seed, members=members, gyms=gyms, days=days, start=from_us(world.start_us).isoformat() + "Z"
    )
    # Kafka first: an unreachable broker must fail the run before any SQL row is written
    topic_names(settings)
    ensure_topics(settings)
    changes = sql_changes(world)
    written = apply_sql_changes(settings, changes, progress)
    summary.rows = {
        "registered_users": written.get("registered_users:insert", 0),
        "gym_logins": written.get("gym_logins:insert", 0),
    }
    summary.logout_updates = written.get("gym_logins:logout", 0)
    summary.open_visits = summary.rows["gym_logins"] - summary.logout_updates

    stats = StreamStats()
    produced = produce_messages(settings, iter_messages(world, rates, stats), progress)
    summary.messages = {name: produced.get(name, 0) for name in settings.kafka_topics}
    summary.malformed = dict(sorted(stats.malformed.items()))
    summary.redelivered = stats.redelivered
    summary.late = stats.late
    summary.out_of_order = stats.out_of_order
    summary.seconds = time.monotonic() - started
    for line in summary.lines():
        log.info("%s", line)
    return summary
