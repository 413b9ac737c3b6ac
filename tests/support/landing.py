"""Helpers to read back what the landers wrote."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_landed(landing_root: Path, pattern: str) -> pa.Table:
    """Every visible Parquet file under the pattern, concatenated (each file must be complete)."""
    files = sorted(landing_root.glob(pattern))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files])


def kafka_rows(landing_root: Path, topic: str) -> list[dict]:
    return read_landed(landing_root, f"kafka/{topic}/*/*.parquet").to_pylist()


def sql_rows(landing_root: Path, table: str) -> list[dict]:
    return read_landed(landing_root, f"sql/{table}/*/*.parquet").to_pylist()


def temp_files(landing_root: Path) -> list[Path]:
    return [p for p in landing_root.rglob(".tmp-*") if p.is_file()]
