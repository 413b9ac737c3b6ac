"""Incremental extraction of the SQL source into Parquet batches.

Each run reads rows whose watermark column is at or after (last watermark -
overlap window), so rows that commit late with an older value are still seen.
Rows in the overlap that an earlier batch already landed are recognised by a
hash of the whole row version and skipped, so every row version lands exactly
once. The batch's files and its ``_commit.json`` (the new watermark and the
hashes inside the new overlap window) appear together in one directory rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyodbc

from ingestion import azure_sql
from ingestion.config import Settings
from ingestion.errors import ConfigError, SourceUnreachable
from ingestion.gc_pacing import batches_die_young
from ingestion.parquet_sink import ParquetFile, WriterThread, disk_full_is_clear, fsync_directory, publish
from ingestion.source_tables import SOURCE_TABLES, SourceTable
from ingestion.sql_dialects import SqlDialect
from ingestion.state import (
    COMMIT_FILE,
    landing_lock,
    latest_sql_batch,
    sql_table_dir,
    staging_dir,
    write_json_atomic,
)
from ingestion.summary import LandingSummary

log = logging.getLogger(__name__)

MAX_UNHASHED_ROWS = 100_000  # overlap candidates kept as rows before they are hashed


_EPOCH = datetime(1970, 1, 1)


class _RowHasher:
    """The hash of a row version, the same whichever way the extract read its timestamps.

    Timestamps read as epoch microseconds are turned back into the datetimes the driver gives, so the
    hashes in a commit written by a lander that read datetimes still match (no overlap row lands twice).
    """

    def __init__(self, table: SourceTable, dialect: SqlDialect):
        self.epoch_columns = [i for i, c in enumerate(table.columns) if dialect.reads_epoch_us(c.ddl)]

    def __call__(self, row) -> str:
        values = list(row)
        for i in self.epoch_columns:
            if values[i] is not None:
                values[i] = _EPOCH + timedelta(microseconds=values[i])
        return hashlib.blake2b(repr(tuple(values)).encode(), digest_size=12).hexdigest()


def _rows_to_batch(rows: list, table: SourceTable, dialect: SqlDialect) -> pa.RecordBatch:
    # itemgetter per column, not zip(*rows): zip walks each pyodbc Row through the generic sequence iterator
    arrays = []
    for index, column in enumerate(table.columns):
        values = list(map(itemgetter(index), rows))
        if column.ddl == "timestamp" and dialect.timestamps_as_text:
            arrays.append(pa.array(values, pa.string()).cast(column.arrow_type))
        elif dialect.reads_epoch_us(column.ddl):
            arrays.append(pa.array(values, pa.int64()).cast(column.arrow_type))
        else:
            arrays.append(pa.array(values, column.arrow_type))
    return pa.RecordBatch.from_arrays(arrays, schema=table.arrow_schema)


def _as_utc_naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class _OverlapWindow:
    """Hashes of the row versions whose watermark lies within the overlap window of the maximum.

    Rows are hashed only once the final maximum is known: hashing every row that fell within the
    window of the maximum seen so far cost a hash per row in the window of every fetch (a table read
    in ascending modified_at order hashed 600 rows per batch and kept 600).
    """

    def __init__(self, overlap: timedelta, watermark: datetime | None, hashes: dict[str, str], row_hash: _RowHasher):
        self.row_hash = row_hash
        self.overlap = overlap
        self.watermark = watermark
        self.entries = {h: datetime.fromisoformat(ts) for h, ts in hashes.items()}
        self.candidates: list[tuple[object, datetime]] = []  # (row, watermark value), not hashed yet

    def add(self, row, value: datetime) -> None:
        self.candidates.append((row, value))

    def note_maximum(self, value: datetime) -> None:
        if self.watermark is None or value > self.watermark:
            self.watermark = value

    def __len__(self) -> int:
        return len(self.entries) + len(self.candidates)

    def prune(self) -> None:
        if self.watermark is not None:
            floor = self.watermark - self.overlap
            self.entries = {h: v for h, v in self.entries.items() if v >= floor}
            self.candidates = [(r, v) for r, v in self.candidates if v >= floor]
        if len(self.candidates) > MAX_UNHASHED_ROWS:  # many rows share the window: keep hashes, not rows
            self._hash_candidates()

    def _hash_candidates(self) -> None:
        for row, value in self.candidates:
            self.entries[self.row_hash(row)] = value
        self.candidates = []

    def floor(self) -> datetime | None:
        return None if self.watermark is None else self.watermark - self.overlap

    def as_json(self) -> dict[str, str]:
        self.prune()
        self._hash_candidates()
        return {h: v.isoformat() for h, v in sorted(self.entries.items())}


def land_sql_table(
    settings: Settings,
    table: SourceTable,
    connect: Callable[[Settings], object] = azure_sql.connect_source,
    progress: Callable[[int], None] | None = None,
) -> LandingSummary:
    """Land the row versions changed since the last batch; a source lost mid-extract is read again."""
    started = time.monotonic()
    landing = settings.landing_root
    with landing_lock(landing, f"sql-{table.name}"):
        previous = latest_sql_batch(landing, table.name)
        attempts = settings.connect_retries
        for attempt in range(1, attempts + 1):
            for leftover in staging_dir(landing).glob(f"sql-{table.name}-*"):
                shutil.rmtree(leftover, ignore_errors=True)  # a killed or failed run's unpublished batch
            summary = LandingSummary(source="sql", entity=table.name)
            try:
                _extract(settings, table, connect, progress, previous, summary)
                break
            except _SourceLost as lost:
                if attempt == attempts:
                    raise SourceUnreachable(
                        f"the SQL source went away while {table.name} was extracted, {attempt} time(s): "
                        f"{lost.message}. Nothing was published; the next run extracts from the same watermark."
                    ) from lost.__cause__
                delay = settings.retry_backoff_seconds * 2 ** (attempt - 1)
                log.warning(
                    "%s: the SQL source went away mid-extract after %d rows (%s); nothing was published, "
                    "extracting again in %.1fs (attempt %d/%d)",
                    table.name,
                    summary.rows,
                    lost.message,
                    delay,
                    attempt + 1,
                    attempts,
                )
                time.sleep(delay)
    summary.seconds = time.monotonic() - started
    return summary


class _SourceLost(Exception):
    """The connection broke during the extract (server stopped, network lost)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _read_errors_are_lost_connections(cursor_call):
    """Run one ODBC call; a driver error after the connection was open means the source went away."""
    try:
        return cursor_call()
    except pyodbc.Error as exc:
        sqlstate = exc.args[0] if exc.args else "?"
        detail = exc.args[-1] if exc.args else str(exc)
        raise _SourceLost(f"[{sqlstate}] {detail}".replace("\n", " ").strip()) from exc


def _extract(settings, table, connect, progress, previous, summary: LandingSummary) -> None:
    dialect = azure_sql.source_dialect(settings)
    landing = settings.landing_root
    previous_commit = previous.commit if previous else {}
    old_watermark = datetime.fromisoformat(previous_commit["watermark"]) if previous_commit.get("watermark") else None
    hashes = previous_commit.get("overlap_hashes", {})
    window = _OverlapWindow(settings.sql_overlap, old_watermark, hashes, _RowHasher(table, dialect))
    seen_before = set(window.entries)
    lower_bound = window.floor()

    conn = connect(settings)
    try:
        cursor = conn.cursor()
        azure_sql.check_table_columns(cursor, dialect, settings.source_schema, table)
        select = ", ".join(dialect.select_expression(c.name, c.ddl) for c in table.columns)
        sql = f"SELECT {select} FROM {dialect.table(settings.source_schema, table.name)}"
        params = []
        if lower_bound is not None:
            sql += f" WHERE {dialect.quote(table.watermark)} >= ?"
            params.append(dialect.timestamp_param(lower_bound))
        _read_errors_are_lost_connections(lambda: cursor.execute(sql, *params))
        work_dir = staging_dir(landing) / f"sql-{table.name}-{uuid.uuid4().hex}"
        with disk_full_is_clear(work_dir):
            work_dir.mkdir(parents=True)
        try:
            files = _write_batches(cursor, table, dialect, settings, work_dir, window, seen_before, summary, progress)
            if summary.rows == 0:
                shutil.rmtree(work_dir)
                summary.detail["watermark"] = old_watermark.isoformat() if old_watermark else None
                return
            window.prune()
            sequence = (previous.sequence + 1) if previous else 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            commit = {
                "table": table.name,
                "sequence": sequence,
                "rows": summary.rows,
                "files": [p.name for p in files],
                "watermark": window.watermark.isoformat(),
                "previous_watermark": old_watermark.isoformat() if old_watermark else None,
                "overlap_seconds": settings.sql_overlap.total_seconds(),
                "overlap_hashes": window.as_json(),
                "extracted_at": datetime.now(UTC).isoformat(),
            }
            write_json_atomic(work_dir / COMMIT_FILE, commit)
            fsync_directory(work_dir)
            final_dir = sql_table_dir(landing, table.name) / f"batch={sequence:06d}-{stamp}"
            publish(work_dir, final_dir)
            summary.paths = [str(final_dir / p.name) for p in files]
            summary.detail["watermark"] = commit["watermark"]
            summary.detail["dir"] = final_dir.name
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
    finally:
        with contextlib.suppress(pyodbc.Error):  # a connection already lost cannot be closed cleanly
            conn.close()


class _BatchFiles:
    """The Parquet files of one batch in its work directory; the writer thread alone calls these."""

    def __init__(self, work_dir: Path, table: SourceTable, max_bytes: int):
        self.work_dir = work_dir
        self.table = table
        self.max_bytes = max_bytes
        self.current: ParquetFile | None = None
        self.files: list[Path] = []
        self.bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.current is None:
            self.current = ParquetFile(self.work_dir, self.table.arrow_schema, **self.table.parquet_options)
        self.current.write(batch)
        if self.current.bytes_written >= self.max_bytes:
            self.finish()

    def finish(self) -> None:
        if self.current is None:
            return
        self.bytes += self.current.close_durably()
        final = self.work_dir / f"part-{len(self.files):05d}.parquet"
        self.current.temp_path.rename(final)
        self.files.append(final)
        self.current = None

    def abandon(self) -> None:
        if self.current is not None:
            self.current.abandon()
            self.current = None


def _write_batches(
    cursor,
    table,
    dialect,
    settings,
    work_dir: Path,
    window: _OverlapWindow,
    seen_before: set,
    summary: LandingSummary,
    progress,
) -> list[Path]:
    """Fetch, keep the row versions not landed before, and hand them to a writer thread as row groups."""
    writer = WriterThread()
    files = _BatchFiles(work_dir, table, settings.landing_file_max_bytes)
    try:
        with batches_die_young(settings.sql_fetch_rows):
            _fetch_new_versions(cursor, table, dialect, settings, window, seen_before, summary, progress, writer, files)
        writer.submit(files.finish)
        writer.drain()
    except BaseException:
        writer.stop()  # the writer thread no longer touches the files
        files.abandon()
        raise
    finally:
        writer.stop()
    summary.bytes += files.bytes
    summary.files = len(files.files)
    return files.files


def _fetch_new_versions(cursor, table, dialect, settings, window, seen_before, summary, progress, writer, files):
    watermark_index = table.column_names.index(table.watermark)
    old_watermark = window.watermark
    while True:
        rows = _read_errors_are_lost_connections(lambda: cursor.fetchmany(settings.sql_fetch_rows))
        if not rows:
            break
        batch = _rows_to_batch(rows, table, dialect)
        watermarks = batch.column(watermark_index)
        if watermarks.null_count:
            raise ConfigError(
                f"{table.name}.{table.watermark} is NULL in {watermarks.null_count} row(s); the watermark "
                "column must always be set by the source application"
            )
        batch_max = pc.max(watermarks).as_py()
        keep = None
        if old_watermark is not None:
            # Only rows at or below the previous watermark can have landed before.
            overlap_idx = pc.indices_nonzero(pc.less_equal(watermarks, pa.scalar(old_watermark, watermarks.type)))
            if len(overlap_idx):
                keep = pc.fill_null(pc.greater(watermarks, pa.scalar(old_watermark, watermarks.type)), False)
                keep = keep.to_pylist()
                for i in overlap_idx.to_pylist():
                    if window.row_hash(rows[i]) not in seen_before:
                        keep[i] = True
        window.note_maximum(batch_max)
        if keep is not None:
            batch = batch.filter(pa.array(keep))
            rows = [r for r, k in zip(rows, keep) if k]
        # Remember the hashes of rows that may fall in the final overlap window.
        floor = window.floor()
        in_window = pc.indices_nonzero(
            pc.greater_equal(batch.column(watermark_index), pa.scalar(floor, watermarks.type))
        )
        if len(in_window):
            window_values = pc.take(batch.column(watermark_index), in_window).to_pylist()
            for i, value in zip(in_window.to_pylist(), window_values):
                window.add(rows[i], _as_utc_naive(value))
        if len(window) > MAX_UNHASHED_ROWS:
            window.prune()
        if batch.num_rows == 0:
            continue
        writer.submit(files.write, batch)
        summary.rows += batch.num_rows
        if progress:
            progress(batch.num_rows)


def configured_tables(names: list[str] | None = None) -> list[SourceTable]:
    """The source tables to land: all configured ones, or the named ones (each must be configured)."""
    names = names or list(SOURCE_TABLES)
    unknown = [n for n in names if n not in SOURCE_TABLES]
    if unknown:
        raise ConfigError(f"unknown source table(s) {unknown}; configured tables: {sorted(SOURCE_TABLES)}")
    return [SOURCE_TABLES[n] for n in names]


def land_sql_tables(settings: Settings, tables: list[str] | None = None) -> list[LandingSummary]:
    summaries = []
    for table in configured_tables(tables):
        summary = land_sql_table(settings, table)
        log.info("%s", summary.line())
        summaries.append(summary)
    return summaries
