"""Reconcile the sources with the landing zone: what the source holds against what has landed.

* SQL: per table, the source's rows and keys against the distinct keys and row versions landed.
  A source row version that is not landed although its ``modified_at`` lies before the last
  watermark minus the overlap window will never be read by the lander: it is lost (a source that
  stamps rows late, or an extract that skipped rows). Versions newer than that are only pending.
* Kafka: per partition, the end offset against the landed offsets (the lag), and offsets that
  expired from the topic before they were landed (lost).

Nothing here writes: the source is read with one SELECT of its key and watermark columns, the
broker with offset requests and a bounded read from the high watermark to partition EOF (the same
end-offset probe the lander uses), the landing zone with DuckDB over its Parquet files. Each
function returns one :class:`Reconciliation` per entity, in the shape of a health-history row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from ingestion import azure_sql
from ingestion.config import Settings
from ingestion.errors import FitLakeError
from ingestion.kafka import list_topic_partitions, make_consumer

# The lander's watermark read and its end-offset probe, which reads to partition EOF (some brokers' high
# watermark is not the end, measured on Tansu), so the lag is measured exactly as the lander measures it.
from ingestion.land_kafka import confirm_end_offsets, read_watermarks
from ingestion.land_sql import configured_tables
from ingestion.source_tables import SourceTable
from ingestion.state import landed_kafka_files, latest_sql_batch, next_kafka_offsets, sql_table_dir

log = logging.getLogger(__name__)

# A separate group: the monitor never commits, and must not look like the landers' group.
MONITOR_GROUP_ID = "fitlake-monitor"


@dataclass
class Reconciliation:
    check_name: str  # "reconciliation" (SQL) or "kafka_lag"
    entity: str
    status: str  # pass, warn, error
    value: float | None  # SQL: versions lost; Kafka: messages not landed yet
    threshold: float | None
    detail: str
    layer: str = "landing"
    metrics: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _key_table(table: SourceTable) -> SourceTable:
    """The table's key and watermark columns only: all a reconciliation reads from the source."""
    names = list(dict.fromkeys([*table.key, table.watermark]))
    columns = tuple(c for c in table.columns if c.name in names)
    return SourceTable(name=table.name, columns=columns, key=table.key, watermark=table.watermark)


def _source_versions(settings: Settings, table: SourceTable, connect) -> pa.Table:
    dialect = azure_sql.source_dialect(settings)
    conn = connect(settings)
    try:
        cursor = conn.cursor()
        azure_sql.check_table_columns(cursor, dialect, settings.source_schema, table)
        select = ", ".join(dialect.quote(c.name) for c in table.columns)
        cursor.execute(f"SELECT {select} FROM {dialect.table(settings.source_schema, table.name)}")
        batches = []
        while rows := cursor.fetchmany(settings.sql_fetch_rows):
            batches.append(_as_batch(rows, table, dialect.timestamps_as_text))
    finally:
        conn.close()
    return pa.Table.from_batches(batches, schema=table.arrow_schema)


def _as_batch(rows: list, table: SourceTable, timestamps_as_text: bool) -> pa.RecordBatch:
    """Source rows as Arrow, typed like the landing files (a driver may return timestamps as text)."""
    arrays = []
    for column, values in zip(table.columns, zip(*rows), strict=True):
        text = column.ddl == "timestamp" and timestamps_as_text
        arrays.append(
            pa.array(values, pa.string()).cast(column.arrow_type) if text else pa.array(values, column.arrow_type)
        )
    return pa.RecordBatch.from_arrays(arrays, schema=table.arrow_schema)


def reconcile_sql_table(
    settings: Settings,
    table: SourceTable,
    max_lost: int = 0,
    connect: Callable[[Settings], object] = azure_sql.connect_source,
) -> Reconciliation:
    """Source rows and keys of `table` against the keys and versions landed."""
    keys_table = _key_table(table)
    batch = latest_sql_batch(settings.landing_root, table.name)
    watermark = datetime.fromisoformat(batch.commit["watermark"]) if batch and batch.commit.get("watermark") else None
    overlap = timedelta(seconds=float(batch.commit.get("overlap_seconds", 0))) if batch else settings.sql_overlap
    # Read the landing zone's state first: anything landed after this only makes the source look
    # *more* landed, never less, so a landing run in progress cannot raise a false alarm.
    files = sorted(str(p) for p in sql_table_dir(settings.landing_root, table.name).glob("batch=*/*.parquet"))
    source = _source_versions(settings, keys_table, connect)

    key = ", ".join(f'"{k}"' for k in table.key)
    version = ", ".join(f'"{c.name}"' for c in keys_table.columns)
    on = " and ".join(f's."{c.name}" is not distinct from l."{c.name}"' for c in keys_table.columns)

    def same_key(alias: str) -> str:
        return " and ".join(f'{alias}."{k}" is not distinct from l."{k}"' for k in table.key)

    settled = "true" if watermark is None else "false"
    floor = None if watermark is None else watermark - overlap
    with duckdb.connect() as con:
        con.register("source_versions", source)
        if files:
            # identifiers come from the validated SourceTable; the file list is a bound parameter
            con.execute(f"create temp table landed as select distinct {version} from read_parquet(?)", [files])
        else:
            con.execute("create temp table landed as select * from source_versions where false")
        if floor is not None:
            settled = f's."{table.watermark}" < ?'
        metrics_sql = f"""
            with not_landed as (
                select s.* from source_versions as s
                where not exists (select 1 from landed as l where {on})
            )
            select
                (select count(*) from source_versions) as source_rows,
                (select count(*) from (select distinct {key} from source_versions)) as source_keys,
                (select count(*) from landed) as landed_versions,
                (select count(*) from (select distinct {key} from landed)) as landed_keys,
                (select count(*) from not_landed as s where {settled}) as lost_versions,
                (select count(*) from not_landed as s where not ({settled})) as pending_versions,
                (select count(*) from (select distinct {key} from not_landed as s where {settled}) as m
                    where not exists (select 1 from landed as l where {same_key("m")})) as lost_keys,
                (select count(*) from (select distinct {key} from landed) as l
                    where not exists (select 1 from source_versions as s where {same_key("s")}))
                    as keys_gone_from_source
        """
        params = [floor, floor, floor] if floor is not None else []
        row = con.execute(metrics_sql, params).fetchone()
    names = (
        "source_rows",
        "source_keys",
        "landed_versions",
        "landed_keys",
        "lost_versions",
        "pending_versions",
        "lost_keys",
        "keys_gone_from_source",
    )
    metrics = dict(zip(names, row))
    metrics["watermark"] = watermark.isoformat() if watermark else None
    lost = metrics["lost_versions"]
    status = "error" if lost > max_lost else "pass"
    detail = (
        f"source {metrics['source_rows']} rows / {metrics['source_keys']} keys; landed {metrics['landed_versions']} "
        f"versions of {metrics['landed_keys']} keys; {lost} source version(s) ({metrics['lost_keys']} key(s)) "
        f"behind the watermark never landed"
    )
    if watermark is not None:
        detail += f" (watermark {watermark.isoformat()} - overlap {overlap.total_seconds():.0f}s)"
    else:
        detail += " (nothing landed yet)"
    if metrics["pending_versions"]:
        detail += f"; {metrics['pending_versions']} newer version(s) wait for the next landing run"
    if lost:
        detail += (
            ". The lander only reads rows at or after its watermark minus the overlap: these rows were written "
            "with an older modified_at. Fix the source's modified_at, or widen FITLAKE_SQL_OVERLAP_SECONDS and re-land."
        )
    return Reconciliation("reconciliation", table.name, status, float(lost), float(max_lost), detail, metrics=metrics)


def reconcile_sql(
    settings: Settings,
    tables: list[str] | None = None,
    max_lost: int = 0,
    connect: Callable[[Settings], object] = azure_sql.connect_source,
) -> list[Reconciliation]:
    """One reconciliation per configured table; a table that cannot be read is an error row, not a crash."""
    results = []
    for table in configured_tables(tables):
        started = time.monotonic()
        try:
            result = reconcile_sql_table(settings, table, max_lost, connect)
        except (FitLakeError, duckdb.Error) as exc:
            result = Reconciliation("reconciliation", table.name, "error", None, float(max_lost), f"not run: {exc}")
        result.metrics["seconds"] = round(time.monotonic() - started, 3)
        log.info("reconciliation %s: %s %s", table.name, result.status, result.detail)
        results.append(result)
    return results


def kafka_lag(
    settings: Settings,
    topics: list[str] | None = None,
    max_lag: int = 1_000_000,
    consumer_factory: Callable[..., object] = make_consumer,
) -> list[Reconciliation]:
    """Per topic: end offsets against the landed offsets per partition; expired offsets are lost."""
    results = []
    names = list(topics or settings.kafka_topics)
    try:
        consumer = consumer_factory(settings, **{"group.id": MONITOR_GROUP_ID})
    except FitLakeError as exc:
        return [Reconciliation("kafka_lag", t, "error", None, float(max_lag), f"not run: {exc}") for t in names]
    try:
        for topic in names:
            try:
                results.append(_topic_lag(consumer, settings, topic, max_lag))
            except FitLakeError as exc:
                results.append(Reconciliation("kafka_lag", topic, "error", None, float(max_lag), f"not run: {exc}"))
            log.info("kafka lag %s: %s %s", topic, results[-1].status, results[-1].detail)
    finally:
        consumer.close()
    return results


def _topic_lag(consumer, settings: Settings, topic: str, max_lag: int) -> Reconciliation:
    partitions = list_topic_partitions(consumer, settings, topic).get(topic)
    if not partitions:
        return Reconciliation(
            "kafka_lag", topic, "error", None, float(max_lag), f"topic {topic} does not exist on the brokers"
        )
    landed = next_kafka_offsets(settings.landing_root, topic)
    lows, highs, probe_from = {}, {}, {}
    for p in partitions:
        low, high = read_watermarks(consumer, settings, topic, p)
        lows[p], highs[p] = low, high
        # as the lander probes: from what landed (or the oldest offset kept), at least the last batch
        probe_from[p] = max(landed.get(p, low), low, high - 1, 0)
    # The high watermark of some brokers is the base offset of the last batch + 1: read to EOF.
    ends = confirm_end_offsets(
        consumer, topic, probe_from, highs, lambda p: read_watermarks(consumer, settings, topic, p)
    )
    per_partition, lag_total, expired_total = {}, 0, 0
    for p in partitions:
        next_offset = landed.get(p, 0)
        expired = max(0, lows[p] - next_offset)
        lag = max(0, ends[p] - max(next_offset, lows[p]))
        per_partition[p] = {"landed_to": next_offset, "end": ends[p], "lag": lag, "expired": expired}
        lag_total += lag
        expired_total += expired
    status = "error" if expired_total else "warn" if lag_total > max_lag else "pass"
    detail = f"{lag_total} message(s) not landed yet (limit {max_lag}); " + ", ".join(
        f"p{p}: landed to {v['landed_to']}, end {v['end']}"
        + (f", {v['expired']} expired unlanded" if v["expired"] else "")
        for p, v in sorted(per_partition.items())
    )
    if expired_total:
        detail += ". Expired offsets left the topic (retention) before the lander read them: they are lost."
    files = len(landed_kafka_files(settings.landing_root, topic))
    metrics = {"partitions": per_partition, "lag": lag_total, "expired": expired_total, "landed_files": files}
    return Reconciliation("kafka_lag", topic, status, float(lag_total), float(max_lag), detail, metrics=metrics)


__all__ = ["MONITOR_GROUP_ID", "Reconciliation", "kafka_lag", "reconcile_sql", "reconcile_sql_table"]
