"""Durable, atomic Parquet files: write under a temporary name, fsync, rename into place."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TEMP_PREFIX = ".tmp-"


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp_path: Path, final_path: Path) -> None:
    """Atomically make a complete file (or directory) visible under its final name."""
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
        directory.mkdir(parents=True, exist_ok=True)
        # The temporary name must not end in .parquet, or a reader's glob would see a half-written file.
        self.temp_path = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}.partial"
        self._file = open(self.temp_path, "wb")
        self._writer = pq.ParquetWriter(self._file, schema, compression=compression, **writer_options)
        self.rows = 0

    @property
    def bytes_written(self) -> int:
        return self._file.tell()

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, pa.RecordBatch):
            self._writer.write_batch(batch)
        else:
            self._writer.write_table(batch)
        self.rows += batch.num_rows

    def close_durably(self) -> int:
        """Finish the footer and fsync; returns the file size in bytes."""
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        return size

    def abandon(self) -> None:
        try:
            self._writer.close()
        finally:
            self._file.close()
            self.temp_path.unlink(missing_ok=True)
