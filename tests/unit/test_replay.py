"""Reading recorded data sets: CSV tables and Kafka envelopes, without any service."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        ("empty.csv", "\n\n", r"empty.csv:1: empty CSV file"),
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


# --- hostile input, fuzzed: every file loads, or fails naming file, line and problem ------------

CSV_HEADERS = [
    "user_id,device_id,mac_address,registration_timestamp",
    "user_id,device_id,mac_address,registration_timestamp,modified_at",
    "mac_address,gym,login,logout",
    "mac_address,gym,login,logout,modified_at",
]
HOSTILE_NUMBERS = st.sampled_from(
    ["NaN", "nan", "Infinity", "-Infinity", "1e400", "1e999999999", "-1e20", "1_000", "١٢", "9" * 5000, "0x10", ""]
)
TIMESTAMP_TEXT = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "2023-11-15T13:21:40Z"]),
    HOSTILE_NUMBERS,
)
FIELD = st.one_of(st.text(max_size=30), TIMESTAMP_TEXT, st.integers(-(2**70), 2**70).map(str), HOSTILE_NUMBERS)


def _assert_loads_or_names_line(reader, path: Path):
    """The property: a result, or a ReplayError "<file>:<line>: <problem>"; any other exception fails the test."""
    try:
        return reader(path)
    except ReplayError as exc:
        assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(exc)), str(exc)
        assert len(str(exc)) < 2000, "an error message must not carry a huge field"
        return None


@st.composite
def csv_files(draw) -> bytes:
    rows = [draw(st.sampled_from(CSV_HEADERS)).split(",")]
    width = len(rows[0])
    for _ in range(draw(st.integers(0, 6))):
        row = draw(st.lists(FIELD, min_size=width - 1, max_size=width + 1))
        rows.append(row)
    text = io.StringIO()
    csv.writer(text, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])), lineterminator="\n").writerows(
        rows
    )
    body = text.getvalue()
    if draw(st.booleans()):
        body = body.replace("\n", "\r\n")
    if draw(st.booleans()):
        body = body.rstrip("\r\n")  # no trailing newline
    data = body.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = "\ufeff".encode() + data  # a BOM
    return data


@given(data=st.one_of(csv_files(), st.binary(max_size=400)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_csv_loads_or_fails_naming_the_line(tmp_path, data):
    path = tmp_path / "registered_users-fuzz.csv" if data[:1] in (b"u", b"\xef") else tmp_path / "fuzz.csv"
    path.write_bytes(data)
    result = _assert_loads_or_names_line(read_csv, path)
    if result is not None:
        for row in result.rows:
            assert len(row) == len(result.table.columns)
            for value, column in zip(row, result.table.columns, strict=True):
                if value is None:
                    assert column.nullable or column.name == "modified_at"
                elif column.ddl == "timestamp":
                    assert isinstance(value, datetime)
                elif column.ddl in ("bigint", "int"):
                    assert isinstance(value, int) and abs(value) < 2**63
                else:
                    assert isinstance(value, str) and "\x00" not in value


USERS_HEADER = b"user_id,device_id,mac_address,registration_timestamp\n"


def test_csv_specials_name_their_line(tmp_path):
    cases = {
        "latin1.csv": (b"user_id,device_id,mac_address,registration_timestamp\n1,2,caf\xe9,0\n", r":2: not UTF-8 text"),
        "huge.csv": (
            b"user_id,device_id,mac_address,registration_timestamp\n1,2,aa,0\n3,4,bb," + b"9" * 200_000 + b"\n",
            r":3: not a readable CSV record: field larger than field limit",
        ),
        "quoted.csv": (
            b'mac_address,gym,login\r\n"a\r\nb",1,0\r\n"c",99999999999,0\r\n',
            r":4: gym='99999999999' is out of range for a INT column",
        ),
        "digits.csv": (
            "user_id,device_id,mac_address,registration_timestamp\n١٢,2,aa,0\n".encode(),
            r":2: user_id='١٢' is not",
        ),
        "nan.csv": (
            b"user_id,device_id,mac_address,registration_timestamp\n1,2,aa,NaN\n",
            r":2: registration_timestamp",
        ),
        "tz.csv": (b"mac_address,gym,login\naa,1,0001-01-01T00:00:00+01:00\n", r":2: login: .* out of range once"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ReplayError, match=re.escape(str(path)) + message):
            read_csv(path)
    ok = tmp_path / "gym_logins.csv"
    ok.write_bytes(b'\xef\xbb\xbfmac_address,gym,login\r\n"a\r\nb",1,1700000000\r\n')  # BOM, CRLF, quoted newline
    assert read_csv(ok).rows == [("a\r\nb", 1, datetime(2023, 11, 14, 22, 13, 20), None, None)]


ENVELOPE_VALUE = st.one_of(
    st.none(),
    st.text(max_size=50),
    st.sampled_from(["\ud800", "ok \udfff", '{"heartrate": NaN}', "[" * 50]),
    st.integers(),
    st.floats(),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
ENVELOPE_TIMESTAMP = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TIMESTAMP_TEXT,
    st.booleans(),
    st.none(),
)


@st.composite
def jsonl_files(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        envelope = {}
        if draw(st.booleans()):
            envelope["key"] = draw(
                st.one_of(st.text(max_size=10), st.integers(), st.none(), st.sampled_from(["\udc80"]))
            )
        envelope["value"] = draw(ENVELOPE_VALUE)
        envelope["topic"] = draw(st.one_of(st.sampled_from(["user_info", "workout", "bpm"]), st.text(max_size=8)))
        envelope["timestamp"] = draw(ENVELOPE_TIMESTAMP)
        line = json.dumps(envelope)  # writes NaN/Infinity, and lone surrogates as \ud800 escapes
        line = draw(st.sampled_from([line, line[: len(line) // 2], "[" * 3000 + "]" * 3000, "{" * 100_000, "", "  "]))
        lines.append(line)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines).encode("utf-8", "surrogatepass")


@given(data=st.one_of(jsonl_files(), st.binary(max_size=400)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_envelopes_load_or_fail_naming_the_line(tmp_path, data):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    result = _assert_loads_or_names_line(read_jsonl, path)
    for line, message in result or []:
        assert line >= 1 and message.topic in ("user_info", "workout", "bpm")
        assert message.timestamp_us >= 0
        for text in (message.key, message.value):
            assert text is None or isinstance(text.encode("utf-8"), bytes)  # encodes: no lone surrogate


def test_replay_cli_never_prints_a_traceback(tmp_path):
    files = {
        "latin1.csv": b"user_id,device_id,mac_address,registration_timestamp\n1,2,caf\xe9,0\n",
        "nested.jsonl": b"[" * 100_000,
        "nan.jsonl": b'{"key": "1", "value": "{}", "topic": "bpm", "timestamp": NaN}\n',
        "surrogate.jsonl": b'{"key": "1", "value": "\\ud800", "topic": "bpm", "timestamp": 1}\n',
        "before1970.jsonl": b'{"key": "1", "value": "{}", "topic": "bpm", "timestamp": -1}\n',
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITLAKE_")}
    env.update(FITLAKE_DATA_ROOT=str(tmp_path / "data"), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = subprocess.run(
            [sys.executable, "-m", "ingestion", "replay", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == ReplayError.exit_code, (name, result.stderr)
        assert re.match(rf"error: {re.escape(str(path))}:\d+: \S", result.stderr), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
