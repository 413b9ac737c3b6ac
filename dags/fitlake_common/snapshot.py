"""A read-only snapshot of gold (and the few silver facts the dashboard filters by), as Parquet.

DuckDB refuses every other process while dbt writes the warehouse, so the dashboard and the API
never open it: the monitor DAG exports this snapshot after each successful transform (holding the
warehouse pool for the seconds the export takes) and readers only ever read Parquet.

Layout under FITLAKE_SNAPSHOT_DIR (default $FITLAKE_DATA_ROOT/snapshot)::

    snap-<UTC stamp>/<table>.parquet + _snapshot.json     one complete export each
    current -> snap-<UTC stamp>                            swapped atomically (rename of a symlink)

A reader resolves `current` once and reads that directory: it never sees half a snapshot, and the
previous snapshots are kept (the last few) so a reader that resolved just before a swap finishes.
No Airflow import here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from fitlake_common.health import DATA_ROOT

SNAPSHOT_ROOT = Path(os.environ.get("FITLAKE_SNAPSHOT_DIR") or DATA_ROOT / "snapshot").resolve()
KEEP = 3

# name -> the SQL that exports it from the warehouse
EXPORTS = {
    "gym_summary": "select * from gold.gym_summary",
    "workout_bpm_summary": "select * from gold.workout_bpm_summary",
    # every completed workout with its day, the member's age band and gender, its heart-rate summary
    # (gold) and the gym of the visit it happened in (gold.gym_summary; null outside a gym visit)
    "workouts": """
        select
            cw.user_id, cw.workout_id, cw.session_id, cw.start_time, cw.end_time,
            cast(cw.start_time as date) as date,
            coalesce(b.age, 'no profile') as age, coalesce(b.gender, 'no profile') as gender,
            s.min_bpm, s.avg_bpm, s.max_bpm, s.num_recordings,
            (select min(g.gym) from gold.gym_summary as g
             where g.user_id = cw.user_id and g.workout_id = cw.workout_id and g.session_id = cw.session_id) as gym
        from silver.completed_workouts as cw
        left join silver.user_bins as b on cw.user_id = b.user_id
        left join gold.workout_bpm_summary as s
            on cw.user_id = s.user_id and cw.workout_id = s.workout_id and cw.session_id = s.session_id
    """,
    "members": """
        select u.user_id, cast(u.registration_timestamp as date) as registered_on,
               coalesce(b.age, 'no profile') as age, coalesce(b.gender, 'no profile') as gender
        from silver.users as u
        left join silver.user_bins as b on u.user_id = b.user_id
    """,
    # completed gym visits (a logout is set)
    "visits": """
        select g.gym, cast(g.login as date) as date, g.mac_address, g.login, g.logout,
               u.user_id, coalesce(b.age, 'no profile') as age,
               round(epoch_us(g.logout - g.login) / 60000000.0, 2) as minutes_in_gym
        from silver.gym_logs as g
        left join silver.users as u on g.mac_address = u.mac_address
        left join silver.user_bins as b on u.user_id = b.user_id
        where g.logout is not null
    """,
    "quarantine": """
        select cast(load_time as date) as date, reason, source_table, topic, count(*) as records
        from silver.quarantine
        group by all
    """,
}


class SnapshotError(Exception):
    """The warehouse cannot be exported (not built yet, or held by another process)."""


def current_dir(root: Path | None = None) -> Path | None:
    """The directory of the current snapshot, or None before the first export."""
    link = Path(root or SNAPSHOT_ROOT) / "current"
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    return target if (target / "_snapshot.json").exists() else None


def metadata(root: Path | None = None) -> dict | None:
    directory = current_dir(root)
    return json.loads((directory / "_snapshot.json").read_text()) if directory else None


def export(warehouse: Path, root: Path | None = None, source: str = "") -> dict:
    """Export the snapshot from `warehouse` (opened read-only) and make it current."""
    import duckdb

    root = Path(root or SNAPSHOT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    created = datetime.now(UTC)
    final = root / f"snap-{created:%Y%m%dT%H%M%S%fZ}"
    work = root / f".tmp-{final.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    if not Path(warehouse).exists():
        raise SnapshotError(f"no warehouse at {warehouse} yet: run the transform_dbt DAG first")
    counts = {}
    try:
        try:
            con = duckdb.connect(str(warehouse), read_only=True)
        except duckdb.IOException as exc:
            raise SnapshotError(
                f"the warehouse {warehouse} is held by another process ({exc}); inside Airflow the "
                "duckdb_warehouse pool prevents this, outside it close the other dbt or DuckDB session"
            ) from None
        with con:
            for name, sql in EXPORTS.items():
                path = str(work / f"{name}.parquet").replace("'", "''")
                try:
                    con.execute(f"copy ({sql}) to '{path}' (format parquet)")
                except duckdb.CatalogException as exc:
                    raise SnapshotError(
                        f"the warehouse has no {name} input yet ({exc.args[0].splitlines()[0]}): run transform_dbt"
                    ) from None
                counts[name] = con.execute(f"select count(*) from read_parquet('{path}')").fetchone()[0]
        meta = {
            "created_at": created.isoformat(),
            "warehouse": str(warehouse),
            "rows": counts,
            "source": source,
            "seconds": round(time.monotonic() - started, 3),
        }
        (work / "_snapshot.json").write_text(json.dumps(meta, indent=2))
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _swap_current(root, final)
    _prune(root)
    meta["path"] = str(final)
    return meta


def _swap_current(root: Path, target: Path) -> None:
    temp = root / f".current-{os.getpid()}"
    if temp.is_symlink() or temp.exists():
        temp.unlink()
    temp.symlink_to(target.name)  # relative: the snapshot root can move
    os.replace(temp, root / "current")  # rename(2) over the old link: atomic for readers


def _prune(root: Path) -> None:
    snapshots = sorted(p for p in root.glob("snap-*") if p.is_dir())
    current = (root / "current").resolve()
    for old in snapshots[:-KEEP]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
