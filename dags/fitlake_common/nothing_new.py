"""Whether a transform run has anything to build: one cycle of landings gives one build, and no more.

The task waits (bounded) while a landing DAG run is in flight, so that one cycle of landings gives one
build; it then skips the build when nothing landed, and neither the project nor the as-of date changed,
since the last successful build (the second transform of a cycle ends here, in seconds, and says so).
A successful full build records what it covered (`BuildRecord`), for that decision in the next run.
All of it is decided without dbt, so a run with nothing to do costs seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from fitlake_common import config
from fitlake_common.warehouse_records import WarehouseRecord

if TYPE_CHECKING:  # dbt_build imports this module
    from fitlake_common.dbt_build import RunPlan

log = logging.getLogger(__name__)


class NothingNew(Exception):
    """Raised (as a skip) when the landing zone, the project and the as-of date are as last built."""


def wait_for_landings(count_in_flight, timeout: float, poll: float = 1.0) -> float:
    """Wait while landing DAG runs are queued or running; returns the seconds waited (bounded by timeout).

    A cycle lands both sources at once. The first landing to finish schedules this run; waiting for
    the others lets this one build take their batches too, so the next run finds nothing new.
    """
    started = time.monotonic()
    announced = None
    while True:
        in_flight = count_in_flight()
        if not in_flight:
            return time.monotonic() - started
        waited = time.monotonic() - started
        if waited >= timeout:
            log.warning(
                "landing still in flight after %.0fs (%s): building what has landed; the rest schedules another run",
                waited,
                ", ".join(in_flight),
            )
            return waited
        if in_flight != announced:
            log.info(
                "waiting for landing DAG runs in flight (%s), so this build takes their batches", ", ".join(in_flight)
            )
            announced = in_flight
        time.sleep(poll)


def landing_fingerprint(landing_root: Path) -> str:
    """A digest of every committed landing file (SQL batches and Kafka offset ranges); staging is ignored."""
    from ingestion.state import landed_kafka_files, landed_sql_batches

    entries: list[str] = []
    for table in _landing_entities(landing_root / "sql"):
        entries += [f"sql/{table}/{batch.path.name}" for batch in landed_sql_batches(landing_root, table)]
    for topic in _landing_entities(landing_root / "kafka"):
        entries += [
            f"kafka/{topic}/{f.path.parent.name}/{f.path.name}" for f in landed_kafka_files(landing_root, topic)
        ]
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def _landing_entities(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def project_fingerprint(project_dir: Path) -> str:
    """A digest of the dbt project's files and of the settings dbt runs with (no dbt needed)."""
    digest = hashlib.sha256(json.dumps(config.DBT_ENV, sort_keys=True).encode())
    files = [project_dir / "dbt_project.yml", config.DBT_PROFILES_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds", "snapshots", "analyses"):
        files += sorted(p for p in (project_dir / folder).rglob("*") if p.is_file())
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(project_dir.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class BuildRecord(WarehouseRecord):
    """What the last successful full build covered (tied to the warehouse file by its inode). A build
    forgets it when it starts: a killed or failed one must not leave the next run thinking nothing changed."""

    kind: ClassVar[str] = "last_build"

    landing: str
    project: str
    as_of_date: str
    warehouse_inode: int
    run_id: str
    finished_at: str


def _warehouse_inode() -> int:
    """The DuckDB file's inode: a replaced or deleted warehouse invalidates the record. A Spark warehouse is
    not a local file (-1): after dropping its tables by hand, trigger a run with `full_refresh`."""
    if config.DBT_ENGINE != "duckdb":
        return -1
    try:
        return config.WAREHOUSE.stat().st_ino
    except OSError:
        return -1


def unchanged_since(record: BuildRecord | None, plan: RunPlan, landing: str, project: str) -> bool:
    return bool(
        record
        and not plan.full_refresh
        and not plan.selective
        and record.landing == landing
        and record.project == project
        and record.as_of_date == plan.as_of_date
        and record.warehouse_inode == _warehouse_inode()
    )
