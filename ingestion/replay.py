"""Load recorded data sets (CONTRACT 1.3) into the sources, so a run on them can be checked against known results.

* ``*.csv``: one SQL table per file, named by the file stem (``registered_users.csv``,
  ``gym_logins-week1.csv``) or else recognised by its header. ``modified_at`` is optional. A row
  without it is stamped when replay writes it (wall-clock UTC, strictly increasing), as the source
  application would stamp it: a recording of last year replayed after a landing must land on the next
  extract, and a version time taken from the recorded business times would lie behind the lander's
  watermark and never be extracted. A row that gives ``modified_at`` keeps it, so a recording can be
  reproduced exactly into a fresh source; replay warns when such rows lie behind what the landing zone
  already extracted. Rows are upserted on the table's key: a gym visit replayed again with its logout
  closes the open row, a row with the same values (``modified_at`` aside) is left alone, a registration
  that contradicts an existing one is an error.
* ``*.jsonl`` / ``*.json``: JSON lines of Kafka envelopes ``{"key", "value", "topic", "partition",
  "offset", "timestamp"}``. The value is produced as-is (even if it is not valid JSON), the key as a
  string, the envelope timestamp (epoch seconds) as the message timestamp; partition and offset are
  informational only.

Timestamps are epoch seconds (int or float, read as decimal text, never through a float) or ISO-8601;
naive values are UTC. Every file is parsed before anything is written, so a bad line stops the replay
with an error naming the file and line and leaves the sources untouched.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from ingestion import azure_sql
from ingestion.config import KAFKA_TOPICS, Settings
from ingestion.errors import FitLakeError
from ingestion.kafka import Message, Progress, ensure_topics, produce_messages, topic_names
from ingestion.source_tables import SOURCE_TABLES, SourceTable
from ingestion.state import latest_sql_batch

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1)
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_EPOCH_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_WHOLE_NUMBER = re.compile(r"[+-]?\d+", re.ASCII)
# The SQL types' ranges: a value outside fails here, with its line, not in the database driver.
INTEGER_RANGES = {"bigint": (-(2**63), 2**63 - 1), "int": (-(2**31), 2**31 - 1)}


class ReplayError(FitLakeError):
    """A recorded data set cannot be read or loaded; the message names the file and line."""

    exit_code = 2


@dataclass
class ReplaySummary:
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows read per SQL table
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)  # gym visits closed by a replayed logout
    unchanged: dict[str, int] = field(default_factory=dict)  # identical rows already present
    messages: dict[str, int] = field(default_factory=dict)  # per configured topic
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return "; ".join(self.lines())

    def lines(self) -> list[str]:
        out = [
            f"sql:{t}: {n} rows read, {self.inserted.get(t, 0)} inserted, {self.updated.get(t, 0)} updated, "
            f"{self.unchanged.get(t, 0)} already present"
            for t, n in self.rows.items()
        ]
        out += [f"kafka:{t}: {n} messages" for t, n in self.messages.items()]
        out.append(f"replayed {len(self.files)} file(s) in {self.seconds:.1f}s")
        return out


# --- values -----------------------------------------------------------------------------------


def parse_timestamp(text: str | int | Decimal) -> datetime:
    """Epoch seconds (int, decimal or exponent text; exact to the microsecond) or ISO-8601, as naive UTC."""
    if isinstance(text, (int, Decimal)):
        return _from_epoch(Decimal(text))
    text = text.strip()
    if _EPOCH_NUMBER.fullmatch(text):
        return _from_epoch(Decimal(text))
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{_shown(text)} is neither epoch seconds nor an ISO-8601 timestamp") from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"{_shown(text)} is out of range once converted to UTC") from None
    return value


def _from_epoch(seconds: Decimal) -> datetime:
    try:
        micros = int((seconds * 1_000_000).to_integral_value(ROUND_HALF_EVEN))
        return EPOCH + timedelta(microseconds=micros)
    except (ArithmeticError, ValueError):  # NaN, Infinity, overflow of Decimal, timedelta or datetime
        raise ValueError(f"epoch {str(seconds)[:40]} is out of range") from None


def _shown(value, limit: int = 60) -> str:
    """A value for an error message, as repr, cut if long (a huge field must not flood the log)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _read_text(path: Path) -> str:
    """The file as text: UTF-8 (a BOM is dropped); anything else is an error naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReplayError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ReplayError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); recorded data sets "
            "are UTF-8: convert the file (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def epoch_millis(value) -> int:
    """An envelope timestamp (epoch seconds as int / Decimal / text, or ISO-8601) as Kafka's epoch milliseconds."""
    delta = parse_timestamp(value) - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int((Decimal(micros) / 1000).to_integral_value(ROUND_HALF_EVEN))


# --- CSV --------------------------------------------------------------------------------------


@dataclass
class CsvRows:
    path: Path
    table: SourceTable
    rows: list[tuple] = field(default_factory=list)  # full rows in table column order
    lines: list[int] = field(default_factory=list)  # the line each row ends on


def _table_for(path: Path, header: list[str]) -> SourceTable:
    stem = path.stem.lower()
    for name, table in SOURCE_TABLES.items():
        if stem == name or re.match(rf"{name}([-_.].*)?$", stem):
            return table
    columns = {c.lower() for c in header}
    for table in SOURCE_TABLES.values():
        required = {c.name for c in table.columns if c.name != "modified_at" and not c.nullable}
        if required <= columns <= set(table.column_names):
            return table
    raise ReplayError(
        f"{path}:1: cannot tell which table this CSV holds: name the file after one of "
        f"{', '.join(SOURCE_TABLES)} or give a header with its columns (header is {', '.join(header)})"
    )


def read_csv(path: Path) -> CsvRows:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        return _read_csv_records(path, reader)
    except csv.Error as exc:  # e.g. a field longer than the csv module's limit, or an unclosed quote
        raise ReplayError(f"{path}:{reader.line_num}: not a readable CSV record: {exc}") from None


def _read_csv_records(path: Path, reader) -> CsvRows:
    header = None
    for record in reader:
        if any(cell.strip() for cell in record):
            header = [cell.strip().lower() for cell in record]
            break
    if header is None:
        raise ReplayError(f"{path}:1: empty CSV file, expected a header line naming the columns")
    table = _table_for(path, header)
    known = set(table.column_names)
    unknown = [c for c in header if c not in known]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    missing = [c.name for c in table.columns if c.name not in header and c.name != "modified_at" and not c.nullable]
    if unknown or missing or duplicated:
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if duplicated:
            problems.append(f"repeated column(s) {', '.join(duplicated)}")
        raise ReplayError(
            f"{path}:{reader.line_num}: {table.name} header: {'; '.join(problems)} "
            f"(columns are {', '.join(table.column_names)}, modified_at optional)"
        )
    result = CsvRows(path, table)
    positions = {name: i for i, name in enumerate(header)}
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        line = reader.line_num
        if len(record) != len(header):
            raise ReplayError(f"{path}:{line}: {len(record)} field(s), the header has {len(header)}")
        try:
            result.rows.append(_csv_row(table, positions, record))
        except ValueError as exc:
            raise ReplayError(f"{path}:{line}: {exc}") from None
        result.lines.append(line)
    return result


def _csv_row(table: SourceTable, positions: dict[str, int], record: list[str]) -> tuple:
    values = {}
    for column in table.columns:
        index = positions.get(column.name)
        text = record[index].strip() if index is not None else ""
        if text == "" or text.lower() == "null":
            if not column.nullable and column.name != "modified_at":
                raise ValueError(f"{column.name} is empty; it is required")
            values[column.name] = None
        elif column.ddl == "timestamp":
            try:
                values[column.name] = parse_timestamp(text)
            except ValueError as exc:
                raise ValueError(f"{column.name}: {exc}") from None
        elif column.ddl in INTEGER_RANGES:
            if not _WHOLE_NUMBER.fullmatch(text):
                raise ValueError(f"{column.name}={_shown(text)} is not a whole number")
            low, high = INTEGER_RANGES[column.ddl]
            value = int(text)
            if not low <= value <= high:
                raise ValueError(f"{column.name}={_shown(text)} is out of range for a {column.ddl.upper()} column")
            values[column.name] = value
        else:
            if column.name == "mac_address" and len(text) > 17:
                raise ValueError(f"mac_address {_shown(text)} is longer than 17 characters")
            if "\x00" in text:
                raise ValueError(f"{column.name} holds a NUL character, which SQL text columns cannot store")
            values[column.name] = text
    return tuple(values[c] for c in table.column_names)  # modified_at None: stamped when written


# --- JSON lines -------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[tuple[int, Message]]:
    """(line, message) for every envelope; ``Message.topic`` is the contract topic name."""
    messages = []
    for line_number, line in enumerate(io.StringIO(_read_text(path)), 1):
        if not line.strip():
            continue
        try:
            envelope = json.loads(line, parse_float=Decimal, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ReplayError(
                f"{path}:{line_number}: not a JSON envelope ({exc.msg} at column {exc.colno}); "
                'expected one {"key", "value", "topic", ...} object per line'
            ) from None
        except RecursionError:
            raise ReplayError(f"{path}:{line_number}: the envelope is nested too deeply to read") from None
        except ValueError as exc:  # NaN/Infinity, or an integer of more digits than Python reads
            raise ReplayError(f"{path}:{line_number}: not a JSON envelope: {exc}") from None
        try:
            messages.append((line_number, _envelope_message(envelope)))
        except ValueError as exc:
            raise ReplayError(f"{path}:{line_number}: {exc}") from None
    return messages


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (the envelope's numbers must be finite)")


def _utf8(name: str, text: str) -> str:
    """Text that becomes UTF-8 bytes on the wire: an unpaired surrogate (a JSON \\ud800 escape) cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} holds an unpaired surrogate ({text[exc.start]!r} at character {exc.start + 1}), "
            "which is not UTF-8 text"
        ) from None
    return text


def _envelope_message(envelope) -> Message:
    if not isinstance(envelope, dict):
        raise ValueError(f"an envelope must be a JSON object, not {type(envelope).__name__}")
    topic = envelope.get("topic")
    if not isinstance(topic, str) or topic not in KAFKA_TOPICS:
        raise ValueError(f"topic {_shown(topic)} is not one of {', '.join(KAFKA_TOPICS)}")
    if "value" not in envelope:
        raise ValueError("the envelope has no value")
    value = envelope["value"]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"value must be the payload as a JSON string (or null), not a {type(value).__name__}")
    if value is not None:
        _utf8("value", value)
    key = envelope.get("key")
    if isinstance(key, bool) or not (key is None or isinstance(key, (str, int))):
        raise ValueError(f"key must be a string (or null), not {_shown(key)}")
    if isinstance(key, str):
        _utf8("key", key)
    raw_timestamp = envelope.get("timestamp")
    if raw_timestamp is None:
        raise ValueError("the envelope has no timestamp (epoch seconds)")
    if isinstance(raw_timestamp, bool) or not isinstance(raw_timestamp, (int, Decimal, str)):
        raise ValueError(f"timestamp {_shown(raw_timestamp)} is not epoch seconds")
    try:
        millis = epoch_millis(raw_timestamp)
    except ValueError as exc:
        raise ValueError(f"timestamp: {exc}") from None
    if millis < 0:
        raise ValueError(f"timestamp {_shown(raw_timestamp)} is before 1970: Kafka timestamps cannot be")
    return Message(topic, None if key is None else str(key), value, millis * 1000)


# --- loading ----------------------------------------------------------------------------------


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The given files, and every non-hidden file under the given directories, in a stable order."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ReplayError(f"{path}: no such file or directory")
    for path in files:
        if path.suffix.lower() not in CSV_SUFFIXES + JSONL_SUFFIXES:
            raise ReplayError(
                f"{path}: unknown file type {path.suffix or '(none)'}; a recorded data set holds "
                f"CSV files ({', '.join(CSV_SUFFIXES)}) and Kafka envelopes "
                f"({', '.join(JSONL_SUFFIXES)})"
            )
    return files


def _as_datetime(value) -> datetime | None:
    """A timestamp read back from the source: a datetime, or ISO text from the SQLite stand-in."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return parse_timestamp(value.isoformat()) if value.tzinfo else value
    return datetime.fromisoformat(value)


def _load_table(
    settings: Settings, table: SourceTable, batches: list[CsvRows], summary: ReplaySummary, progress: Progress | None
) -> None:
    """Upsert the rows on the table's key; reads the table's current rows once (replay sets are small)."""
    dialect = azure_sql.source_dialect(settings)
    schema = settings.source_schema
    key_index = [table.column_names.index(k) for k in table.key]
    timestamp_index = [i for i, c in enumerate(table.columns) if c.ddl == "timestamp"]
    version_index = table.column_names.index(table.watermark)

    def normalise(row) -> tuple:
        row = list(row)
        for i in timestamp_index:
            row[i] = _as_datetime(row[i])
        return tuple(row)

    def same_values(a: tuple, b: tuple) -> bool:
        return all(x == y for i, (x, y) in enumerate(zip(a, b, strict=True)) if i != version_index)

    conn = azure_sql.connect_source(settings, autocommit=False)
    try:
        cursor = conn.cursor()
        select = ", ".join(dialect.quote(c) for c in table.column_names)
        cursor.execute(f"SELECT {select} FROM {dialect.table(schema, table.name)}")
        current = {}
        for row in cursor.fetchall():
            row = normalise(row)
            current[tuple(row[i] for i in key_index)] = row
        inserts, updates = {}, {}
        unchanged = 0
        for batch in batches:
            for row, line in zip(batch.rows, batch.lines, strict=True):
                key = tuple(row[i] for i in key_index)
                existing = current.get(key)
                if existing is None:
                    inserts[key] = row
                    current[key] = row
                elif same_values(existing, row):
                    unchanged += 1
                elif table.name == "gym_logins" and existing[3] is None:
                    # The visit was open: this row closes it (or re-dates the open row).
                    (inserts if key in inserts else updates)[key] = row
                    current[key] = row
                elif table.name == "gym_logins" and row[3] is None:
                    unchanged += 1  # an open version of a visit already closed: nothing newer to say
                else:
                    raise ReplayError(
                        f"{batch.path}:{line}: {table.name} key {dict(zip(table.key, key, strict=True))} already "
                        f"exists with different values ({_show(table, existing)}); the data set contradicts the "
                        "source, replay it into a fresh source"
                    )
        _warn_behind_watermark(settings, table, [*inserts.values(), *updates.values()], version_index)
        clock = azure_sql.ModifiedAtClock()

        def stamped(row: tuple) -> tuple:
            if row[version_index] is not None:
                return row
            return (*row[:version_index], clock.stamp(), *row[version_index + 1 :])

        azure_sql.insert_rows(conn, dialect, schema, table, [stamped(r) for r in inserts.values()])
        if updates:
            closing = [stamped(r) for r in updates.values()]
            azure_sql.set_gym_logout(conn, dialect, schema, [(r[3], r[4], r[0], r[1], r[2]) for r in closing])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    summary.inserted[table.name] = len(inserts)
    summary.updated[table.name] = len(updates)
    summary.unchanged[table.name] = unchanged
    if progress:
        progress(len(inserts) + len(updates))


def _warn_behind_watermark(settings: Settings, table: SourceTable, rows: list[tuple], version_index: int) -> None:
    """Rows that carry their own modified_at behind the landed watermark's overlap are never extracted."""
    latest = latest_sql_batch(settings.landing_root, table.name)
    if latest is None or not latest.commit.get("watermark"):
        return
    floor = datetime.fromisoformat(latest.commit["watermark"]) - settings.sql_overlap
    behind = [r[version_index] for r in rows if r[version_index] is not None and r[version_index] < floor]
    if behind:
        log.warning(
            "%s: %d replayed row(s) carry a modified_at (earliest %s) before %s, the landed watermark minus the "
            "overlap window in %s: the next extract will not take them. Leave modified_at out of the CSV to have "
            "the rows stamped when they are written, or re-land %s from scratch (README, Day-2 operations).",
            table.name,
            len(behind),
            min(behind).isoformat(),
            floor.isoformat(),
            settings.landing_root,
            table.name,
        )


def _show(table: SourceTable, row: tuple) -> str:
    return ", ".join(f"{name}={value}" for name, value in zip(table.column_names, row, strict=True))


def replay(settings: Settings, paths: list[Path], progress: Progress | None = None) -> ReplaySummary:
    """Load CSV tables into the SQL source and produce JSON-lines envelopes to Kafka; returns the counts.

    ``progress(n)`` gets increments of rows written and messages produced.
    """
    from ingestion.stack import ensure_source_tables

    started = time.monotonic()
    summary = ReplaySummary()
    files = collect_files(paths)
    if not files:
        raise ReplayError(f"no files to replay under {', '.join(str(p) for p in paths)}")
    tables: dict[str, list[CsvRows]] = {}
    messages: list[Message] = []
    for path in files:  # parse everything before writing anything
        summary.files.append(str(path))
        if path.suffix.lower() in CSV_SUFFIXES:
            rows = read_csv(path)
            tables.setdefault(rows.table.name, []).append(rows)
            summary.rows[rows.table.name] = summary.rows.get(rows.table.name, 0) + len(rows.rows)
        else:
            messages += [message for _, message in read_jsonl(path)]
    if messages:  # Kafka first: an unreachable broker fails the replay before any SQL row is written
        names = topic_names(settings)
        ensure_topics(settings, [names[t] for t in sorted({m.topic for m in messages})])
    if tables:
        ensure_source_tables(settings)
        for name in SOURCE_TABLES:
            if name in tables:
                _load_table(settings, SOURCE_TABLES[name], tables[name], summary, progress)
    if messages:
        produced = produce_messages(settings, messages, progress)
        summary.messages = {name: produced[name] for name in settings.kafka_topics if produced.get(name)}
    summary.seconds = time.monotonic() - started
    for line in summary.lines():
        log.info("%s", line)
    return summary


__all__ = ["ReplayError", "ReplaySummary", "collect_files", "parse_timestamp", "read_csv", "read_jsonl", "replay"]
