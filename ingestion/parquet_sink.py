"""Durable, atomic Parquet files: write under a temporary name, fsync, rename into place.

A :class:`WriterThread` takes the encoding off the thread that reads the source: pyarrow releases the
GIL while it encodes and compresses a row group, so that work overlaps the next fetch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.errors import LandingDiskFull

TEMP_PREFIX = ".tmp-"
WRITES_IN_FLIGHT = 2  # row groups handed to the writer thread and not yet written: bounds memory


@contextlib.contextmanager
def disk_full_is_clear(path: Path) -> Iterator[None]:
    """A full landing disk (ENOSPC, EDQUOT) becomes an error that says so and what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space left on device" not in str(exc):
            raise
        raise LandingDiskFull(
            f"the landing disk is full: writing {path} failed ({exc.strerror or exc}). Nothing partial was "
            "published (files appear only complete); free space on that filesystem and rerun: landing continues "
            "after the last complete file."
        ) from exc


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp_path: Path, final_path: Path) -> None:
    """Atomically make a complete file (or directory) visible under its final name."""
    with disk_full_is_clear(final_path):
        final_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, final_path)
        fsync_directory(final_path.parent)


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temporary files a killed writer left behind (call only under the lander's lock)."""
    if not directory.exists():
        return 0
    removed = 0
    for path in directory.glob(f"{TEMP_PREFIX}*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


class ParquetFile:
    """One Parquet file being written under a temporary name in ``directory``.

    Writes go straight to disk row group by row group, so memory stays bounded
    by the batch the caller hands over, not by the file size.
    """

    def __init__(self, directory: Path, schema: pa.Schema, compression: str = "zstd", **writer_options):
        # The temporary name must not end in .parquet, or a reader's glob would see a half-written file.
        self.temp_path = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}.partial"
        with disk_full_is_clear(self.temp_path):
            directory.mkdir(parents=True, exist_ok=True)
            self._file = open(self.temp_path, "wb")
            self._writer = pq.ParquetWriter(self._file, schema, compression=compression, **writer_options)
        self.rows = 0

    @property
    def bytes_written(self) -> int:
        return self._file.tell()

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        with disk_full_is_clear(self.temp_path):
            if isinstance(batch, pa.RecordBatch):
                self._writer.write_batch(batch)
            else:
                self._writer.write_table(batch)
        self.rows += batch.num_rows

    def close_durably(self) -> int:
        """Finish the footer and fsync; returns the file size in bytes."""
        with disk_full_is_clear(self.temp_path):
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            size = self._file.tell()
            self._file.close()
        return size

    def abandon(self) -> None:
        """Discard the file; on a full disk closing fails too, and that must not hide the first error."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._file.close()
        self.temp_path.unlink(missing_ok=True)


class WriterThread:
    """One thread that runs the file work in the order it is handed over; failures surface in the caller."""

    def __init__(self, in_flight: int = WRITES_IN_FLIGHT):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fitlake-parquet")
        self._pending: deque[Future] = deque()
        self._in_flight = in_flight

    def submit(self, work, *args) -> None:
        """Queue ``work(*args)``; waits while ``in_flight`` items are queued (bounded memory)."""
        while self._pending and (len(self._pending) >= self._in_flight or self._pending[0].done()):
            self._pending.popleft().result()  # raises the writer's error here
        self._pending.append(self._executor.submit(work, *args))

    def drain(self) -> None:
        """Wait for everything handed over; raise the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def stop(self) -> None:
        """Wait for the thread to finish what it was given, ignoring failures (the caller is failing already)."""
        for future in self._pending:
            future.exception()
        self._pending.clear()
        self._executor.shutdown(wait=True)
