"""Health checks: where their results live, their thresholds, and the health history.

The history is append-only Parquet, one file per monitor run, under FITLAKE_HEALTH_DIR/history/,
outside the warehouse: a full refresh (or a new warehouse file) never loses it, and readers (the
dashboard, the API) read it without touching DuckDB's one-writer lock. A file is written under a
temporary name and renamed into place, so a reader never sees half of one; its name comes from the
Airflow run, so a retried task replaces its own file instead of adding rows twice.

No Airflow import here: `make dashboard` and the tests read the history without Airflow.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fitlake_common import REPO_ROOT

DATA_ROOT = Path(os.environ.get("FITLAKE_DATA_ROOT") or REPO_ROOT / "data").resolve()
HEALTH_DIR = Path(os.environ.get("FITLAKE_HEALTH_DIR") or DATA_ROOT / "health").resolve()
HISTORY_DIR = HEALTH_DIR / "history"

# Thresholds of the checks computed in Python (the dbt ones are dbt vars, see dbt_project.yml).
RECONCILE_MAX_LOST = int(os.environ.get("FITLAKE_RECONCILE_MAX_LOST", "0"))
KAFKA_LAG_MAX = int(os.environ.get("FITLAKE_KAFKA_LAG_MAX", "1000000"))
# Which statuses raise an alert (comma-separated).
ALERT_STATUSES = tuple(s.strip() for s in os.environ.get("FITLAKE_ALERT_ON", "warn,error").split(",") if s.strip())
# A check that keeps failing is alerted again after this many hours (0: on every monitor run).
ALERT_REPEAT_HOURS = float(os.environ.get("FITLAKE_ALERT_REPEAT_HOURS", "24"))

STATUSES = ("pass", "skipped", "warn", "error")
SEVERITY = {"pass": 0, "skipped": 0, "warn": 1, "error": 2}
CHECKS = ("freshness", "volume", "duplicates", "reconciliation", "kafka_lag", "quarantine_rate", "dbt")


@dataclass
class CheckResult:
    """One row of the health history."""

    check_name: str
    entity: str
    status: str
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    layer: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"{self.check_name}/{self.entity}: status {self.status!r} is not one of {STATUSES}")
        self.value = None if self.value is None else float(self.value)
        self.threshold = None if self.threshold is None else float(self.threshold)

    @property
    def failing(self) -> bool:
        return self.status in ALERT_STATUSES

    @classmethod
    def from_dict(cls, row: dict) -> CheckResult:
        return cls(
            **{k: row.get(k) for k in ("check_name", "entity", "status", "value", "threshold", "detail", "layer")}
        )

    def as_dict(self) -> dict:
        return asdict(self)


def freshness_results(sources_json: dict) -> list[CheckResult]:
    """`dbt source freshness` results (target/sources.json) as history rows (value: hours since landed)."""
    results = []
    for result in sources_json.get("results", []):
        entity = result["unique_id"].rsplit(".", 1)[-1]
        criteria = result.get("criteria") or {}
        warn_h = _hours(criteria.get("warn_after"))
        error_h = _hours(criteria.get("error_after"))
        age_s = result.get("max_loaded_at_time_ago_in_s")
        status = str(result.get("status"))
        landed_at = result.get("max_loaded_at") or ""
        if status == "runtime error" or landed_at.startswith("0001-01-01"):
            results.append(
                CheckResult(
                    "freshness",
                    entity,
                    "error",
                    None,
                    error_h,
                    "no file of this entity has landed yet"
                    if landed_at.startswith("0001-01-01")
                    else f"freshness could not be measured: {result.get('error') or result.get('message')}",
                    "landing",
                )
            )
            continue
        hours = None if age_s is None else age_s / 3600
        results.append(
            CheckResult(
                "freshness",
                entity,
                status if status in STATUSES else "error",
                hours,
                error_h,
                f"newest file landed {hours:.1f} h ago ({landed_at}); "
                f"warn after {warn_h:g} h, error after {error_h:g} h",
                "landing",
            )
        )
    return results


def _hours(rule: dict | None) -> float | None:
    if not rule or rule.get("count") is None:
        return None
    per = {"minute": 1 / 60, "hour": 1, "day": 24}[rule.get("period", "hour")]
    return float(rule["count"]) * per


def run_file_name(run_id: str) -> str:
    return f"run-{hashlib.sha1(run_id.encode()).hexdigest()[:16]}.parquet"


def write_history(
    results: list[CheckResult],
    run_id: str,
    checked_at: datetime | None = None,
    run_url: str = "",
    history_dir=None,
    alerted: frozenset[tuple[str, str]] = frozenset(),
) -> Path:
    """Append the results of one monitor run (replacing this run's earlier file, if a retry wrote one).

    `alerted`: the (check, entity) pairs this run alerts on (the next runs do not repeat them, see `alert_reason`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    history_dir = Path(history_dir or HISTORY_DIR)
    history_dir.mkdir(parents=True, exist_ok=True)
    checked_at = (checked_at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    rows = [r.as_dict() for r in results]
    table = pa.table(
        {
            "checked_at": pa.array([checked_at] * len(rows), pa.timestamp("us")),
            "run_id": pa.array([run_id] * len(rows), pa.string()),
            "run_url": pa.array([run_url] * len(rows), pa.string()),
            "check_name": pa.array([r["check_name"] for r in rows], pa.string()),
            "entity": pa.array([r["entity"] for r in rows], pa.string()),
            "layer": pa.array([r["layer"] for r in rows], pa.string()),
            "status": pa.array([r["status"] for r in rows], pa.string()),
            "value": pa.array([r["value"] for r in rows], pa.float64()),
            "threshold": pa.array([r["threshold"] for r in rows], pa.float64()),
            "detail": pa.array([r["detail"] for r in rows], pa.string()),
            "alerted": pa.array([(r["check_name"], r["entity"]) in alerted for r in rows], pa.bool_()),
        }
    )
    final = history_dir / run_file_name(run_id)
    temp = history_dir / f".tmp-{final.name}"
    pq.write_table(table, temp)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)
    return final


HISTORY_COLUMNS = "checked_at, run_id, run_url, check_name, entity, layer, status, value, threshold, detail, alerted"


def history_sql(history_dir=None) -> str:
    """A DuckDB relation over every history file (an empty, typed relation before the first run)."""
    history_dir = Path(history_dir or HISTORY_DIR)
    if not any(history_dir.glob("run-*.parquet")):
        return (
            "(select cast(null as timestamp) as checked_at, '' as run_id, '' as run_url, '' as check_name, "
            "'' as entity, '' as layer, '' as status, cast(null as double) as value, "
            "cast(null as double) as threshold, '' as detail, false as alerted where false)"
        )
    pattern = str(history_dir / "run-*.parquet").replace("'", "''")
    return f"(select {HISTORY_COLUMNS} from read_parquet('{pattern}', union_by_name = true))"


def latest_sql(history_dir=None) -> str:
    """The latest result of every (check, entity)."""
    return (
        f"(select * from {history_sql(history_dir)} "
        "qualify row_number() over (partition by check_name, entity order by checked_at desc) = 1)"
    )


def previous_state(run_id: str, history_dir=None) -> dict[tuple[str, str], dict]:
    """Per (check, entity), from the runs before `run_id`: the latest status and when it was last alerted."""
    import duckdb

    sql = (
        "select check_name, entity, arg_max(status, checked_at) as status, "
        f"max(checked_at) filter (where alerted) as alerted_at from {history_sql(history_dir)} "
        "where run_id <> ? group by all"
    )
    with duckdb.connect() as con:
        rows = con.execute(sql, [run_id]).fetchall()
    return {(check, entity): {"status": status, "alerted_at": alerted_at} for check, entity, status, alerted_at in rows}


def alert_reason(
    result: CheckResult, previous: dict | None, now: datetime, repeat_hours: float = ALERT_REPEAT_HOURS
) -> str | None:
    """Why a failing result is alerted, or None: a check that keeps failing alerts once, not every hour.

    `new` (it passed, or never ran, before), `worse` (warn -> error), or `still failing` once `repeat_hours`
    have passed since its last alert; `repeat_hours` 0 alerts on every run.
    """
    if not result.failing:
        return None
    if previous is None or previous["status"] not in ALERT_STATUSES:
        return "new"
    if SEVERITY[result.status] > SEVERITY.get(previous["status"], 0):
        return "worse"
    alerted_at = previous["alerted_at"]
    if repeat_hours <= 0 or alerted_at is None or now - alerted_at >= timedelta(hours=repeat_hours):
        return "still failing"
    return None


def summary_line(results: list[CheckResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no checks"


def to_json(results: list[CheckResult]) -> str:
    return json.dumps([r.as_dict() for r in results])
