"""Write landing-zone Parquet files in exactly the layout of CONTRACT section 2.

    sql/<table>/batch=<6-digit seq>-<yyyymmddTHHMMSSZ>/part-<5 digits>.parquet (+ _commit.json)
    kafka/<topic>/partition=<p>/<topic>-<p>-<first offset:020d>-<last offset:020d>.parquet

The writer keeps per-table batch sequences and per-(topic, partition) offsets, so a test can
land data run after run like the ingestion package does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.UTC

REGISTERED_USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("device_id", pa.int64()),
        ("mac_address", pa.string()),
        ("registration_timestamp", pa.timestamp("us")),
        ("modified_at", pa.timestamp("us")),
    ]
)
GYM_LOGINS_SCHEMA = pa.schema(
    [
        ("mac_address", pa.string()),
        ("gym", pa.int32()),
        ("login", pa.timestamp("us")),
        ("logout", pa.timestamp("us")),
        ("modified_at", pa.timestamp("us")),
    ]
)
KAFKA_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", pa.timestamp("us")),
        ("key", pa.string()),
        ("value", pa.string()),
    ]
)
SQL_SCHEMAS = {"registered_users": REGISTERED_USERS_SCHEMA, "gym_logins": GYM_LOGINS_SCHEMA}


def ts(epoch: float | int | dt.datetime | None) -> dt.datetime | None:
    """Epoch seconds (or a datetime) to a naive UTC datetime with microsecond precision."""
    if epoch is None or isinstance(epoch, dt.datetime):
        return epoch
    micros = round(epoch * 1_000_000) if isinstance(epoch, float) else epoch * 1_000_000
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)


def payload(obj: Mapping[str, Any] | str | None) -> str | None:
    """A message value: dicts are serialised as JSON, strings are kept as is (malformed)."""
    if obj is None or isinstance(obj, str):
        return obj
    return json.dumps(obj)


class LandingWriter:
    """Writes landing files under `root`; each call is one extract batch or one Kafka file."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._batch_seq: dict[str, int] = defaultdict(int)
        self._next_offset: dict[tuple[str, int], int] = defaultdict(int)
        self._clock = dt.datetime(2026, 1, 1, tzinfo=UTC)

    def _tick(self) -> str:
        self._clock += dt.timedelta(seconds=1)
        return self._clock.strftime("%Y%m%dT%H%M%SZ")

    def sql_batch(self, table: str, rows: Sequence[Mapping[str, Any]]) -> Path:
        """One extract of `table` (registered_users or gym_logins) as one batch directory."""
        schema = SQL_SCHEMAS[table]
        self._batch_seq[table] += 1
        batch_dir = self.root / "sql" / table / f"batch={self._batch_seq[table]:06d}-{self._tick()}"
        batch_dir.mkdir(parents=True, exist_ok=True)
        columns: dict[str, list] = {name: [] for name in schema.names}
        for row in rows:
            for name in schema.names:
                value = row.get(name)
                if pa.types.is_timestamp(schema.field(name).type):
                    value = ts(value)
                columns[name].append(value)
        path = batch_dir / "part-00000.parquet"
        pq.write_table(pa.table(columns, schema=schema), path)
        (batch_dir / "_commit.json").write_text(json.dumps({"rows": len(rows), "files": [path.name]}))
        return path

    def kafka_file(
        self,
        topic: str,
        messages: Iterable[Mapping[str, Any] | str | None | tuple],
        partition: int = 0,
        broker_time: float = 1_700_000_000,
        keys: Sequence[str | None] | None = None,
        offsets: Sequence[int] | None = None,
    ) -> Path | None:
        """One micro-batch file of `topic`/`partition`.

        `messages` are payload dicts (serialised), raw strings (kept, e.g. malformed JSON) or
        None. Offsets continue from the previous file of the partition unless `offsets` is
        given (to model a redelivery of the same offsets). Keys default to the payload's
        user_id / device_id.
        """
        values = [payload(m) for m in messages]
        if not values:
            return None
        if offsets is None:
            first = self._next_offset[(topic, partition)]
            offsets = list(range(first, first + len(values)))
        self._next_offset[(topic, partition)] = max(self._next_offset[(topic, partition)], max(offsets) + 1)
        if keys is None:
            keys = []
            for v in values:
                try:
                    obj = json.loads(v) if v else None
                except ValueError:
                    obj = None
                key = None
                if isinstance(obj, dict):
                    key = obj.get("device_id", obj.get("user_id"))
                keys.append(None if key is None else str(key))
        table = pa.table(
            {
                "topic": [topic] * len(values),
                "partition": [partition] * len(values),
                "offset": list(offsets),
                "timestamp": [ts(broker_time + i * 0.001) for i in range(len(values))],
                "key": list(keys),
                "value": values,
            },
            schema=KAFKA_SCHEMA,
        )
        part_dir = self.root / "kafka" / topic / f"partition={partition}"
        part_dir.mkdir(parents=True, exist_ok=True)
        path = part_dir / f"{topic}-{partition}-{min(offsets):020d}-{max(offsets):020d}.parquet"
        if path.exists():  # a redelivery of the same offset range lands under a distinct name
            path = path.with_name(path.stem + f"-redelivery{len(list(part_dir.iterdir()))}.parquet")
        pq.write_table(table, path)
        return path
