"""The configured source tables: columns, keys and the watermark column.

These are data-contract constants (CONTRACT 1.1); names are validated once
here, so every SQL statement built from them only ever quotes known identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ingestion.sql_dialects import validate_identifier


@dataclass(frozen=True)
class SourceColumn:
    name: str
    ddl: str  # key into SqlDialect.ddl_types
    arrow_type: pa.DataType
    nullable: bool = False
    # Values repeat across rows (a member's visits, a gym): the landing files dictionary-encode only these.
    # For a column of distinct values the Parquet writer built a dictionary per row group and dropped it,
    # half of the encoding CPU of registered_users (and larger files).
    repeats: bool = False


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[SourceColumn, ...]
    key: tuple[str, ...]
    watermark: str

    def __post_init__(self):
        validate_identifier(self.name, "table")
        names = [validate_identifier(c.name, f"column of {self.name}") for c in self.columns]
        missing = [c for c in (*self.key, self.watermark) if c not in names]
        if missing:
            raise ValueError(f"{self.name}: key/watermark columns {missing} are not among its columns")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def parquet_options(self) -> dict:
        return {"use_dictionary": [c.name for c in self.columns if c.repeats]}

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])


TIMESTAMP = pa.timestamp("us")

REGISTERED_USERS = SourceTable(
    name="registered_users",
    columns=(
        SourceColumn("user_id", "bigint", pa.int64()),
        SourceColumn("device_id", "bigint", pa.int64()),
        SourceColumn("mac_address", "varchar17", pa.string()),
        SourceColumn("registration_timestamp", "timestamp", TIMESTAMP),
        SourceColumn("modified_at", "timestamp", TIMESTAMP),
    ),
    key=("user_id",),
    watermark="modified_at",
)

GYM_LOGINS = SourceTable(
    name="gym_logins",
    columns=(
        SourceColumn("mac_address", "varchar17", pa.string(), repeats=True),
        SourceColumn("gym", "int", pa.int32(), repeats=True),
        SourceColumn("login", "timestamp", TIMESTAMP),
        SourceColumn("logout", "timestamp", TIMESTAMP, nullable=True),
        SourceColumn("modified_at", "timestamp", TIMESTAMP),
    ),
    key=("mac_address", "gym", "login"),
    watermark="modified_at",
)

SOURCE_TABLES: dict[str, SourceTable] = {t.name: t for t in (REGISTERED_USERS, GYM_LOGINS)}
