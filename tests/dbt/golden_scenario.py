"""The golden scenario: hand-made landing data for three runs and the hand-computed rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

MAC1, MAC2, MAC3 = "aa:aa:aa:aa:aa:01", "aa:aa:aa:aa:aa:02", "aa:aa:aa:aa:aa:03"


def T(epoch: float) -> dt.datetime:
    """Naive UTC datetime of an epoch, exact to the microsecond."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=round(Decimal(str(epoch)) * 1_000_000))


def profile(user_id, update_type, ts, city=None, dob=None, **extra):
    event = {"user_id": user_id, "update_type": update_type, "timestamp": ts}
    if update_type != "delete":
        event.update(
            dob=dob,
            sex="F",
            gender="female",
            first_name=f"first{user_id}",
            last_name=f"last{user_id}",
            address={"street_address": f"{user_id} Main St", "city": city, "state": "IL", "zip": 62701},
        )
    event.update(extra)
    return event


def workout(user_id, workout_id, session_id, action, ts):
    return {"user_id": user_id, "workout_id": workout_id, "timestamp": ts, "action": action, "session_id": session_id}


def bpm(device_id, ts, heartrate):
    return {"device_id": device_id, "time": ts, "heartrate": heartrate}


BAD_WORKOUT_JSON = '{"user_id": 20001, "workout_id": '
MISSING_SESSION = {"user_id": 20001, "workout_id": 9, "timestamp": 1700050000, "action": "start"}
UNKNOWN_ACTION = {"user_id": 20001, "workout_id": 9, "timestamp": 1700050000, "action": "pause", "session_id": 1}
BAD_BPM = "not json at all"
BAD_DOB = profile(20006, "new", 1700000000, city="X", dob="13/45/1990")
UNKNOWN_UPDATE = profile(20007, "upsert", 1700000000, city="Y", dob="01/01/1990")


def land_run1(w):
    w.sql_batch(
        "registered_users",
        [
            dict(
                user_id=20001,
                device_id=300017,
                mac_address=MAC1,
                registration_timestamp=1700000000,
                modified_at=1700000000,
            ),
            dict(
                user_id=20002,
                device_id=300018,
                mac_address=MAC2,
                registration_timestamp=1700000100,
                modified_at=1700000100,
            ),
            dict(
                user_id=20003,
                device_id=300019,
                mac_address=MAC3,
                registration_timestamp=1700000200,
                modified_at=1700000200,
            ),
            dict(
                user_id=None,
                device_id=300099,
                mac_address="ff:ff:ff:ff:ff:ff",
                registration_timestamp=1700000300,
                modified_at=1700000300,
            ),
        ],
    )
    w.sql_batch(
        "gym_logins",
        [
            dict(mac_address=MAC1, gym=2, login=1700050000, logout=None, modified_at=1700050000),
            dict(mac_address=MAC2, gym=5, login=1700070000, logout=1700075400, modified_at=1700075400),
        ],
    )
    w.kafka_file(
        "user_info",
        [
            profile(20001, "new", 1700000000, city="Springfield", dob="12/31/1990"),
            profile(20002, "new", 1700000100, city="Ogdenville", dob="02/02/1980"),
            profile(20004, "new", 1700000100, city="Gone", dob="03/03/1970"),
            profile(20004, "delete", 1700000200),
            profile(20005, "new", 1700000300.75, city="North Haverbrook", dob="06/15/2006"),
            BAD_DOB,
            UNKNOWN_UPDATE,
        ],
    )
    w.kafka_file(
        "workout",
        [
            workout(20001, 1, 100, "start", 1700050300),
            workout(20002, 2, 200, "start", 1700070100.5),
            workout(20002, 2, 200, "stop", 1700070700),
            workout(20003, 3, 300, "start", 1700080000),
            workout(20003, 3, 300, "stop", 1700080000 + 4 * 3600),  # more than 3 h: never completes
            BAD_WORKOUT_JSON,
            MISSING_SESSION,
            UNKNOWN_ACTION,
        ],
    )
    w.kafka_file(
        "bpm",
        [
            bpm(300017, 1700050300, 90),  # exactly on the start: excluded
            bpm(300017, 1700050600, 100),
            bpm(300017, 1700050700, 0),  # invalid
            bpm(300017, 1700050750, 1200.5),  # impossible: quarantined, never in a summary
            bpm(300017, 1700050900.25, 110),  # exactly on the end: included
            bpm(300017, 1700051000, 120),  # after the end
            bpm(300017, 1700051100, None),  # invalid (null)
            bpm(300018, 1700070100.5, 80),  # on the start
            bpm(300018, 1700070400, 130),
            bpm(300018, 1700070700, 140),  # on the end
            BAD_BPM,
        ],
    )


def land_run2(w):
    w.sql_batch(
        "registered_users",
        [
            # a later extract of user 20001 with another device: the first registration wins
            dict(
                user_id=20001,
                device_id=999999,
                mac_address=MAC1,
                registration_timestamp=1700000500,
                modified_at=1700000500,
            ),
        ],
    )
    w.sql_batch(
        "gym_logins",
        [
            dict(mac_address=MAC1, gym=2, login=1700050000, logout=None, modified_at=1700050000),  # overlap re-extract
            dict(mac_address=MAC1, gym=2, login=1700050000, logout=1700054500.5, modified_at=1700054500),
            dict(
                mac_address=MAC3, gym=1, login=1700060000, logout=1700059000, modified_at=1700060000
            ),  # logout < login
        ],
    )
    w.kafka_file(
        "user_info",
        [
            profile(20001, "update", 1700040000.5, city="Shelbyville", dob="12/31/1990"),
            profile(20002, "delete", 1700030000),
        ],
    )
    w.kafka_file(
        "workout",
        [
            workout(20001, 1, 100, "start", 1700050300),  # redelivered
            workout(20001, 1, 100, "stop", 1700050900.25),  # the stop, a run after its start
        ],
    )
    w.kafka_file("bpm", [bpm(300017, 1700050600, 100)])  # redelivered reading


def land_run3(w):
    w.kafka_file(
        "user_info",
        [
            profile(20001, "update", 1700020000, city="Capital City", dob="12/31/1990"),  # older: loses
            profile(20002, "new", 1700045000, city="Brockway", dob=None),  # re-created, no dob
        ],
    )
    w.kafka_file("bpm", [bpm(300017, 1700050800.123456, 104.9)])  # after the workout completed


EXPECTED = {
    "silver.users": [
        (20001, 300017, MAC1, T(1700000000)),
        (20002, 300018, MAC2, T(1700000100)),
        (20003, 300019, MAC3, T(1700000200)),
    ],
    "silver.gym_logs": [
        (MAC1, 2, T(1700050000), T(1700054500.5)),
        (MAC2, 5, T(1700070000), T(1700075400)),
        (MAC3, 1, T(1700060000), None),
    ],
    "silver.user_profile": [
        (
            20001,
            dt.date(1990, 12, 31),
            "F",
            "female",
            "first20001",
            "last20001",
            "20001 Main St",
            "Shelbyville",
            "IL",
            62701,
            T(1700040000.5),
        ),
        (
            20002,
            None,
            "F",
            "female",
            "first20002",
            "last20002",
            "20002 Main St",
            "Brockway",
            "IL",
            62701,
            T(1700045000),
        ),
        (
            20005,
            dt.date(2006, 6, 15),
            "F",
            "female",
            "first20005",
            "last20005",
            "20005 Main St",
            "North Haverbrook",
            "IL",
            62701,
            T(1700000300.75),
        ),
    ],
    "silver.workouts": [
        (20001, 1, T(1700050300), "start", 100),
        (20001, 1, T(1700050900.25), "stop", 100),
        (20002, 2, T(1700070100.5), "start", 200),
        (20002, 2, T(1700070700), "stop", 200),
        (20003, 3, T(1700080000), "start", 300),
        (20003, 3, T(1700094400), "stop", 300),
    ],
    "silver.heart_rate": [
        (300017, T(1700050300), 90.0, True),
        (300017, T(1700050600), 100.0, True),
        (300017, T(1700050700), 0.0, False),
        (300017, T(1700050800.123456), 104.9, True),
        (300017, T(1700050900.25), 110.0, True),
        (300017, T(1700051000), 120.0, True),
        (300017, T(1700051100), None, False),
        (300018, T(1700070100.5), 80.0, True),
        (300018, T(1700070400), 130.0, True),
        (300018, T(1700070700), 140.0, True),
    ],
    "silver.user_bins": [
        (20001, "25-35", "female", "Shelbyville", "IL"),
        (20002, "invalid age", "female", "Brockway", "IL"),
        (20005, "18-25", "female", "North Haverbrook", "IL"),
    ],
    "silver.completed_workouts": [
        (20001, 1, 100, T(1700050300), T(1700050900.25)),
        (20002, 2, 200, T(1700070100.5), T(1700070700)),
    ],
    "silver.workout_bpm": [
        (20001, 1, 100, T(1700050300), T(1700050900.25), T(1700050600), 100.0),
        (20001, 1, 100, T(1700050300), T(1700050900.25), T(1700050800.123456), 104.9),
        (20001, 1, 100, T(1700050300), T(1700050900.25), T(1700050900.25), 110.0),
        (20002, 2, 200, T(1700070100.5), T(1700070700), T(1700070400), 130.0),
        (20002, 2, 200, T(1700070100.5), T(1700070700), T(1700070700), 140.0),
    ],
    "gold.workout_bpm_summary": [
        # the unrounded mean, 104.9666...: rounded to 2 decimals it would be 104.97
        (1, 100, 20001, "25-35", "female", "Shelbyville", "IL", 100.0, (100.0 + 104.9 + 110.0) / 3, 110.0, 3),
        (2, 200, 20002, "invalid age", "female", "Brockway", "IL", 130.0, 135.0, 140.0, 2),
    ],
    "gold.gym_summary": [
        (dt.date(2023, 11, 15), 2, MAC1, 1, 100, Decimal("75.01"), Decimal("10.00"), 20001, T(1700050000)),
        (dt.date(2023, 11, 15), 5, MAC2, 2, 200, Decimal("90.00"), Decimal("9.99"), 20002, T(1700070000)),
    ],
}

EXPECTED_QUARANTINE = sorted(
    [
        ("registered_users_bz", None, "missing user_id"),
        ("gym_logins_bz", None, "logout not after login"),
        ("kafka_multiplex_bz", "user_info", "bad dob"),
        ("kafka_multiplex_bz", "user_info", "unknown update_type"),
        ("kafka_multiplex_bz", "workout", "malformed json"),
        ("kafka_multiplex_bz", "workout", "missing session_id"),
        ("kafka_multiplex_bz", "workout", "unknown action"),
        ("kafka_multiplex_bz", "bpm", "malformed json"),
        ("kafka_multiplex_bz", "bpm", "impossible heartrate"),
    ],
    key=str,
)
