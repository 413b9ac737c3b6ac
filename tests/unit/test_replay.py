"""Reading recorded data sets: CSV tables and Kafka envelopes, without any service."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion.replay import ReplayError, collect_files, epoch_millis, parse_timestamp, read_csv, read_jsonl

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "replay"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700054500.123456", datetime(2023, 11, 15, 13, 21, 40, 123456)),
        ("1700054500", datetime(2023, 11, 15, 13, 21, 40)),
        ("1700054500.5", datetime(2023, 11, 15, 13, 21, 40, 500000)),
        ("1700054500.000001", datetime(2023, 11, 15, 13, 21, 40, 1)),
        ("1.7000545001234560e9", datetime(2023, 11, 15, 13, 21, 40, 123456)),
        (" 1700054500.1234564 ", datetime(2023, 11, 15, 13, 21, 40, 123456)),  # sub-microsecond digits round
        ("2023-11-15T13:21:40.123456Z", datetime(2023, 11, 15, 13, 21, 40, 123456)),
        ("2023-11-15T14:21:40.123456+01:00", datetime(2023, 11, 15, 13, 21, 40, 123456)),
        ("2023-11-15 13:21:40", datetime(2023, 11, 15, 13, 21, 40)),
        ("0", datetime(1970, 1, 1)),
    ],
)
def test_timestamps_are_exact_to_the_microsecond(text, expected):
    assert parse_timestamp(text) == expected


def test_epoch_values_from_json_keep_their_digits():
    assert parse_timestamp(Decimal("1700054500.123456")) == datetime(2023, 11, 15, 13, 21, 40, 123456)
    assert parse_timestamp(1700054500) == datetime(2023, 11, 15, 13, 21, 40)
    assert epoch_millis(Decimal("1700052100.25")) == 1700052100250
    assert epoch_millis(1700050300) == 1700050300000
    with pytest.raises(ValueError, match="neither epoch seconds nor"):
        parse_timestamp("yesterday")


def test_sample_registered_users():
    rows = read_csv(SAMPLE / "registered_users.csv")
    assert not (SAMPLE / "registered_users.csv").read_bytes().endswith(b"\n")  # the file under test
    assert rows.table.name == "registered_users"
    assert rows.rows == [  # no modified_at column: None, stamped when the row is written
        (20001, 300017, "0a:1b:2c:3d:4e:5f", datetime(2023, 11, 14, 22, 13, 20), None),
        (20002, 300018, "0a:1b:2c:3d:4e:60", datetime(2023, 11, 14, 22, 15, 0, 250000), None),
        (20003, 300019, "0a:1b:2c:3d:4e:61", datetime(2023, 11, 14, 22, 20, 0, 1), None),
    ]
    assert rows.lines == [2, 3, 5]  # line 4 is blank


def test_sample_gym_logins_keep_a_given_modified_at_and_leave_an_empty_one_to_the_write():
    rows = read_csv(SAMPLE / "gym_logins.csv")
    login = datetime(2023, 11, 15, 12, 6, 40)
    logout = datetime(2023, 11, 15, 13, 21, 40, 500000)
    assert rows.rows[0] == ("0a:1b:2c:3d:4e:5f", 2, login, None, None)
    assert rows.rows[1] == ("0a:1b:2c:3d:4e:5f", 2, login, logout, None)
    assert rows.rows[2][3] == rows.rows[2][4] == datetime(2023, 11, 15, 13, 21, 40, 123456)
    assert rows.rows[3][2] == datetime(2023, 11, 15, 13, 0)


def test_table_from_header_when_the_name_says_nothing(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("mac_address,gym,login\n\n\naa:bb:cc:dd:ee:ff,3,1700000000.25\n")
    rows = read_csv(path)
    assert rows.table.name == "gym_logins"
    assert rows.rows == [("aa:bb:cc:dd:ee:ff", 3, datetime(2023, 11, 14, 22, 13, 20, 250000), None, None)]
    assert rows.lines == [4]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "registered_users.csv",
            "user_id,device_id,mac_address,registration_timestamp\n1,2,aa,1700000000\n\n3,4,bb,noon\n",
            r"registered_users.csv:4: registration_timestamp: 'noon' is neither",
        ),
        (
            "registered_users.csv",
            "user_id,device_id,mac_address\n1,2,aa\n",
            r"registered_users.csv:1: .*missing column",
        ),
        ("gym_logins.csv", "mac_address,gym,login,shoe_size\n", r"gym_logins.csv:1: .*unknown column\(s\) shoe_size"),
        ("gym_logins.csv", "mac_address,gym,login\naa,x,1\n", r"gym_logins.csv:2: gym='x' is not a whole number"),
        ("gym_logins.csv", "mac_address,gym,login\naa,1\n", r"gym_logins.csv:2: 2 field\(s\), the header has 3"),
        ("gym_logins.csv", "mac_address,gym,login\naa,1,\n", r"gym_logins.csv:2: login is empty"),
        ("trainers.csv", "trainer_id,name\n1,x\n", r"trainers.csv:1: cannot tell which table"),
        ("empty.csv", "\n\n", r"empty.csv: empty CSV file"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ReplayError, match=message):
        read_csv(path)


def test_sample_envelopes():
    lines = read_jsonl(SAMPLE / "kafka.jsonl")
    assert [line for line, _ in lines] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]  # line 4 is blank
    messages = [m for _, m in lines]
    assert {m.topic for m in messages} == {"user_info", "workout", "bpm"}
    assert messages[1].timestamp_us == 1700000105_500000
    assert messages[2].timestamp_us == 1700060000_000000  # Kafka timestamps are milliseconds
    assert messages[5].key == "20001" and messages[5].timestamp_us == 1700052100_250000
    assert messages[9].value.endswith('"heartrate": ')  # a malformed value is replayed as it is
    assert '"timestamp": 1700060000.000001' in messages[2].value


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"key": "1", "value": "{}", "topic": "bpm", "timestamp": 1', r"bad\.jsonl:2: not a JSON envelope"),
        ('{"key": "1", "value": "{}", "topic": "steps", "timestamp": 1}', r"bad\.jsonl:2: topic 'steps'"),
        ('{"key": "1", "value": {"a": 1}, "topic": "bpm", "timestamp": 1}', r"bad\.jsonl:2: value must be"),
        ('{"key": "1", "value": "{}", "topic": "bpm"}', r"bad\.jsonl:2: the envelope has no timestamp"),
        ('{"key": "1", "value": "{}", "topic": "bpm", "timestamp": "soon"}', r"bad\.jsonl:2: timestamp: 'soon'"),
        ("[1, 2]", r"bad\.jsonl:2: an envelope must be a JSON object"),
    ],
)
def test_envelope_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": 7, "value": "not json {", "topic": "workout", "timestamp": 1700000000}\n' + line)
    with pytest.raises(ReplayError, match=message):
        read_jsonl(path)


def test_a_good_file_with_an_int_key_and_a_malformed_value(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(
        '\n{"key": 7, "value": "not json {", "topic": "workout", "partition": 9, "offset": 1, '
        '"timestamp": 1700000000.5}\n\n'
    )
    [(line, message)] = read_jsonl(path)
    assert line == 2 and message.key == "7" and message.value == "not json {"
    assert message.timestamp_us == 1700000000_500000


def test_collect_files_walks_directories_and_rejects_unknown_types(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text("")
    (tmp_path / "a.csv").write_text("")
    (tmp_path / ".hidden.txt").write_text("")
    assert collect_files([tmp_path]) == [tmp_path / "a.csv", tmp_path / "sub" / "b.jsonl"]
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ReplayError, match=r"notes\.txt: unknown file type \.txt"):
        collect_files([tmp_path])
    with pytest.raises(ReplayError, match="no such file"):
        collect_files([tmp_path / "missing"])
