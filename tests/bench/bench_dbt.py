#!/usr/bin/env python
# ruff: noqa: E501  (SQL and data lines read better unwrapped)
"""Benchmark of the dbt project on generated landing data (a script, not a pytest test).

    python tests/bench/bench_dbt.py [--heart-rate-rows 10000000] [--workdir DIR] [--keep]

1. Generates a landing zone with DuckDB COPY ... TO parquet (no Python loops over rows):
   ~N heart-rate readings (1 Hz per device, float epochs, 4 Kafka partitions keyed by device),
   one registered user, one profile and two 30-minute workouts per device, one gym visit each.
2. `dbt parse` once (as `make dbt-manifest` does for production; every later run reuses it), then a
   full `dbt build` (models and data tests) in a child process: wall time, bronze rows/s, peak RSS.
3. Lands 1 % new data: a new workout with its readings for 2.5 % of the devices plus late
   readings inside workouts completed in step 2, runs `dbt build` again and prints its time
   and ratio to the full build; then a rerun with nothing new, and a build that selects nothing
   (dbt's fixed costs).
4. The same kind of increment once more, built by a long-lived process (dbtRunner with the
   manifest loaded once): what an incremental run costs without dbt's start-up.
dbt gets the environment production gives it (fitlake_common.config.DBT_ENV: unit tests, whose
inputs are fixed, run in CI only). Goals: full build incl. tests < 30 s and < 2 GiB; incremental
< 10 % of the full build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO / "dbt_project"
sys.path.insert(0, str(REPO / "dags"))
from fitlake_common.config import DBT_ENV  # noqa: E402  (dbt's settings in production)

DBT = Path(sys.executable).with_name("dbt")
BASE = 1_700_000_000
PARTITIONS = 4
READINGS_PER_DEVICE = 5_000  # 1 Hz: sessions at +0.5 s and +2400.5 s, 1800 s each
SESSIONS = (0, 1)
SESSION_GAP = 2_400
SESSION_LENGTH = 1_800


def kafka_path(root: Path, topic: str, partition: int, first: int, last: int) -> Path:
    d = root / "kafka" / topic / f"partition={partition}"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{topic}-{partition}-{first:020d}-{last:020d}.parquet"


def sql_path(root: Path, table: str, seq: int) -> Path:
    d = root / "sql" / table / f"batch={seq:06d}-20260101T00000{seq}Z"
    d.mkdir(parents=True, exist_ok=True)
    (d / "_commit.json").write_text("{}")
    return d / "part-00000.parquet"


def copy(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> None:
    con.execute(f"copy ({select}) to '{path}' (format parquet, compression zstd, row_group_size 122880)")


KAFKA_COLUMNS = """
    {topic!r} as topic, cast({p} as integer) as "partition", cast(o as bigint) as "offset",
    make_timestamp(cast(({event_us}) + 2000000 as bigint)) as "timestamp",
    cast(device_index as varchar) as key, {value} as value
"""


def bpm_select(p: int, first_offset: int, n: int, devices: str, times_sql: str, rows_per_device: int) -> str:
    """Readings of partition p: offset o -> device and time from pure arithmetic."""
    value = (
        "'{\"device_id\": ' || (500000 + device_index) || ', \"time\": ' || "
        "cast(cast(t as decimal(18, 3)) as varchar) || ', \"heartrate\": ' || (60 + (o * 7919) % 120) || '}'"
    )
    return f"""
        with r as (
            select range as o, {devices} as device_index, {times_sql} as t
            from range({first_offset}, {first_offset + n})
        )
        select {KAFKA_COLUMNS.format(topic="bpm", p=p, event_us="t * 1000000", value=value)}
        from r
    """


def generate_full(root: Path, heart_rate_rows: int, con) -> dict:
    devices = max(PARTITIONS, heart_rate_rows // READINGS_PER_DEVICE // PARTITIONS * PARTITIONS)
    per_partition = devices // PARTITIONS
    rows_per_partition = per_partition * READINGS_PER_DEVICE
    files_per_partition = max(1, rows_per_partition // 1_000_000)
    chunk = -(-rows_per_partition // files_per_partition)
    for p in range(PARTITIONS):
        for f in range(files_per_partition):
            first = f * chunk
            n = min(chunk, rows_per_partition - first)
            # device_index = (o // R) * P + p ; time = base + device_index * 10 + o % R + 0.25
            copy(
                con,
                bpm_select(
                    p,
                    first,
                    n,
                    devices=f"(o // {READINGS_PER_DEVICE}) * {PARTITIONS} + {p}",
                    times_sql=f"{BASE} + ((o // {READINGS_PER_DEVICE}) * {PARTITIONS} + {p}) * 10 + o % {READINGS_PER_DEVICE} + 0.25",
                    rows_per_device=READINGS_PER_DEVICE,
                ),
                kafka_path(root, "bpm", p, first, first + n - 1),
            )
    # workouts: start and stop of each session, keyed and partitioned by user (= device index)
    for p in range(PARTITIONS):
        n = per_partition * len(SESSIONS) * 2
        value = (
            "'{\"user_id\": ' || (100000 + device_index) || ', \"workout_id\": ' || (1 + s) || "
            '\', "timestamp": \' || cast(cast(t as decimal(18, 1)) as varchar) || \', "action": "\' || '
            "(case when a = 0 then 'start' else 'stop' end) || '\", \"session_id\": ' || (device_index * 10 + s) || '}'"
        )
        copy(
            con,
            f"""
            with r as (
                select range as o, (range // 4) * {PARTITIONS} + {p} as device_index,
                       (range // 2) % 2 as s, range % 2 as a
                from range(0, {n})
            ), t as (
                select *, {BASE} + device_index * 10 + s * {SESSION_GAP} + 0.5 + a * {SESSION_LENGTH} as t from r
            )
            select {KAFKA_COLUMNS.format(topic="workout", p=p, event_us="t * 1000000", value=value)} from t
        """,
            kafka_path(root, "workout", p, 0, n - 1),
        )
        value = (
            '\'{"user_id": \' || (100000 + device_index) || \', "update_type": "new", "timestamp": \' || '
            f"({BASE} - 86400 + device_index) || ', \"dob\": \"' || lpad(cast(1 + device_index % 12 as varchar), 2, '0') || "
            '\'/15/\' || (1940 + device_index % 60) || \'", "sex": "F", "gender": "\' || '
            "(case when device_index % 2 = 0 then 'female' else 'male' end) || '\", \"first_name\": \"f\", "
            '"last_name": "l", "address": {"street_address": "1 Main St", "city": "c\' || '
            '(device_index % 50) || \'", "state": "s\' || (device_index % 5) || \'", "zip": \' || '
            "(10000 + device_index) || '}}'"
        )
        copy(
            con,
            f"""
            with r as (select range as o, range * {PARTITIONS} + {p} as device_index from range(0, {per_partition}))
            select {KAFKA_COLUMNS.format(topic="user_info", p=p, event_us=f"({BASE} - 86400 + device_index) * 1000000", value=value)}
            from r
        """,
            kafka_path(root, "user_info", p, 0, per_partition - 1),
        )
    copy(
        con,
        f"""
        select cast(100000 + range as bigint) as user_id, cast(500000 + range as bigint) as device_id,
               printf('02:00:%02x:%02x:%02x:%02x', (range >> 24) % 256, (range >> 16) % 256, (range >> 8) % 256, range % 256) as mac_address,
               make_timestamp(cast(({BASE} - 90000 + range) * 1000000 as bigint)) as registration_timestamp,
               make_timestamp(cast(({BASE} - 90000 + range) * 1000000 as bigint)) as modified_at
        from range(0, {devices})
    """,
        sql_path(root, "registered_users", 1),
    )
    copy(
        con,
        f"""
        select printf('02:00:%02x:%02x:%02x:%02x', (range >> 24) % 256, (range >> 16) % 256, (range >> 8) % 256, range % 256) as mac_address,
               cast(1 + range % 7 as integer) as gym,
               make_timestamp(cast(({BASE} + range * 10 - 300) * 1000000 as bigint)) as login,
               make_timestamp(cast(({BASE} + range * 10 + 2000) * 1000000 as bigint)) as logout,
               make_timestamp(cast(({BASE} + range * 10 + 2000) * 1000000 as bigint)) as modified_at
        from range(0, {devices})
    """,
        sql_path(root, "gym_logins", 1),
    )
    return {"devices": devices, "per_partition": per_partition, "rows_per_partition": rows_per_partition}


def generate_increment(root: Path, shape: dict, con, step: int = 0) -> int:
    """1 % new readings: a third session for 2.5 % of the devices (readings, start and stop),
    plus late readings (at +0.75 s) inside the first session of other devices. Each step uses
    its own devices and offsets, so increments can follow one another."""
    per_partition, rows_per_partition = shape["per_partition"], shape["rows_per_partition"]
    new_sessions_per_partition = max(1, per_partition // 40)
    late_devices_per_partition = max(1, per_partition // 40)
    late_per_device = 200
    n_new = new_sessions_per_partition * SESSION_LENGTH
    n_late = late_devices_per_partition * late_per_device
    first_device = step * (new_sessions_per_partition + late_devices_per_partition)
    total = 0
    for p in range(PARTITIONS):
        first = rows_per_partition + step * (n_new + n_late)
        start_third = READINGS_PER_DEVICE + 100
        copy(
            con,
            bpm_select(
                p,
                first,
                n_new,
                devices=f"({first_device} + (o - {first}) // {SESSION_LENGTH}) * {PARTITIONS} + {p}",
                times_sql=f"{BASE} + (({first_device} + (o - {first}) // {SESSION_LENGTH}) * {PARTITIONS} + {p}) * 10 + {start_third} + (o - {first}) % {SESSION_LENGTH} + 1.25",
                rows_per_device=SESSION_LENGTH,
            ),
            kafka_path(root, "bpm", p, first, first + n_new - 1),
        )
        first2 = first + n_new
        offset_devices = first_device + new_sessions_per_partition  # other devices than the new sessions
        copy(
            con,
            bpm_select(
                p,
                first2,
                n_late,
                devices=f"(((o - {first2}) // {late_per_device}) + {offset_devices}) * {PARTITIONS} + {p}",
                times_sql=f"{BASE} + ((((o - {first2}) // {late_per_device}) + {offset_devices}) * {PARTITIONS} + {p}) * 10 + 100 + (o - {first2}) % {late_per_device} + 0.75",
                rows_per_device=late_per_device,
            ),
            kafka_path(root, "bpm", p, first2, first2 + n_late - 1),
        )
        total += n_new + n_late
        n = new_sessions_per_partition * 2
        wfirst = per_partition * len(SESSIONS) * 2 + step * n
        value = (
            '\'{"user_id": \' || (100000 + device_index) || \', "workout_id": 3, "timestamp": \' || '
            'cast(cast(t as decimal(18, 1)) as varchar) || \', "action": "\' || '
            "(case when a = 0 then 'start' else 'stop' end) || '\", \"session_id\": ' || (device_index * 10 + 2) || '}'"
        )
        copy(
            con,
            f"""
            with r as (
                select range as o, ({first_device} + (range - {wfirst}) // 2) * {PARTITIONS} + {p} as device_index,
                       (range - {wfirst}) % 2 as a
                from range({wfirst}, {wfirst + n})
            ), t as (
                select *, {BASE} + device_index * 10 + {start_third} + 0.5 + a * {SESSION_LENGTH} + 1 as t from r
            )
            select {KAFKA_COLUMNS.format(topic="workout", p=p, event_us="t * 1000000", value=value)} from t
        """,
            kafka_path(root, "workout", p, wfirst, wfirst + n - 1),
        )
    return total


def dbt_args(env: dict, *args: str) -> list[str]:
    return [
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--target-path",
        env["BENCH_TARGET"],
        "--log-path",
        env["BENCH_LOGS"],
    ]


def run_dbt(env: dict, *args: str) -> tuple[float, int, int]:
    """Run dbt in a child process; returns (wall seconds, peak RSS in bytes, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(DBT), *dbt_args(env, *args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(out.decode()[-4000:])
    return elapsed, usage.ru_maxrss * 1024, code


def split_times(target: Path, phase: str) -> tuple[float, float, float]:
    """dbt's own run time, and models vs tests time of the last run (summed over threads);
    prints the slowest nodes."""
    shutil.copy(target / "run_results.json", target / f"run_results_{phase}.json")
    run_results = json.loads((target / "run_results.json").read_text())
    results = run_results["results"]
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:6]
    print(
        f"  slowest nodes ({phase}): "
        + ", ".join(
            f"{r['unique_id'].split('.')[-2 if r['unique_id'].startswith('test.') else -1][:40]} {r['execution_time']:.1f}s"
            for r in slowest
        )
    )
    models = sum(r["execution_time"] for r in results if r["unique_id"].startswith("model."))
    tests = sum(r["execution_time"] for r in results if not r["unique_id"].startswith("model."))
    return run_results["elapsed_time"], models, tests


def warm_process(env: dict, landing: Path, shape: dict) -> dict:
    """Child process: dbt imported and the manifest loaded once, then a rerun with nothing new and a
    build after a second 1 % increment, both through the same dbtRunner (no start-up per build)."""
    os.environ.update(env)
    t = time.perf_counter()
    from dbt.cli.main import dbtRunner

    figures = {"import": time.perf_counter() - t}
    t = time.perf_counter()
    manifest = dbtRunner().invoke(dbt_args(env, "parse", "--quiet")).result
    figures["load_manifest"] = time.perf_counter() - t
    runner = dbtRunner(manifest=manifest)
    # the first build of a process also compiles dbt's macros into Python: a long-lived process has
    # done that long before, so it is a warm-up here (and reported as such)
    for phase in ("first", "noop", "incremental"):
        if phase == "incremental":
            with duckdb.connect() as con:
                figures["added"] = generate_increment(landing, shape, con, step=1)
        t = time.perf_counter()
        result = runner.invoke(dbt_args(env, "build", "--quiet"))
        figures[phase] = time.perf_counter() - t
        if not result.success:
            raise SystemExit(f"dbt build ({phase}) failed in the long-lived process: {result.exception}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heart-rate-rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--warm-child", type=Path, help=argparse.SUPPRESS)  # internal: step 4 in a child
    args = parser.parse_args()
    if args.warm_child:
        spec = json.loads(args.warm_child.read_text())
        figures = warm_process(spec["env"], Path(spec["landing"]), spec["shape"])
        args.warm_child.write_text(json.dumps(figures))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fitlake_bench_"))
    shutil.rmtree(workdir / "landing", ignore_errors=True)
    shutil.rmtree(workdir / "warehouse", ignore_errors=True)
    shutil.rmtree(workdir / "target", ignore_errors=True)
    landing, warehouse = workdir / "landing", workdir / "warehouse" / "fitlake.duckdb"
    landing.mkdir(parents=True)
    warehouse.parent.mkdir(parents=True)
    env = dict(
        os.environ,
        **{k: v for k, v in DBT_ENV.items() if k.startswith("DBT_")},
        FITLAKE_LANDING_ROOT=str(landing),
        FITLAKE_WAREHOUSE=str(warehouse),
        BENCH_TARGET=str(workdir / "target"),
        BENCH_LOGS=str(workdir / "logs"),
    )

    t = time.perf_counter()
    with duckdb.connect() as con:
        shape = generate_full(landing, args.heart_rate_rows, con)
    print(
        f"generated {shape['rows_per_partition'] * PARTITIONS:,} heart-rate rows for {shape['devices']:,} devices "
        f"in {time.perf_counter() - t:.1f} s"
    )

    parse_s, _, code = run_dbt(env, "parse")
    if code:
        return code
    print(f"dbt parse (once per code change, reused by every run): {parse_s:.1f} s")

    full_s, full_rss, code = run_dbt(env, "build")
    if code:
        return code
    with duckdb.connect(str(warehouse), read_only=True) as con:
        bronze_rows = con.execute("select count(*) from bronze.kafka_multiplex_bz").fetchone()[0]
        counts = {
            t: con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in (
                "silver.heart_rate",
                "silver.workout_bpm",
                "silver.completed_workouts",
                "gold.workout_bpm_summary",
                "gold.gym_summary",
            )
        }
    dbt_s, models_s, tests_s = split_times(workdir / "target", "full")
    print(
        f"full build:        {full_s:6.1f} s  ({bronze_rows / full_s:,.0f} bronze rows/s; dbt's own run {dbt_s:.1f} s: "
        f"models {models_s:.1f} s, tests {tests_s:.1f} s summed over threads)  peak RSS {full_rss / 2**30:.2f} GiB"
    )
    print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    with duckdb.connect() as con:
        added = generate_increment(landing, shape, con)
    inc_s, inc_rss, code = run_dbt(env, "build")
    if code:
        return code
    dbt_s, models_s, tests_s = split_times(workdir / "target", "incremental")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        hr = con.execute("select count(*) from silver.heart_rate").fetchone()[0]
    print(
        f"incremental build: {inc_s:6.1f} s  (+{added:,} readings, {added / max(1, counts['silver.heart_rate']):.1%}; "
        f"dbt's own run {dbt_s:.1f} s: models {models_s:.1f} s, tests {tests_s:.1f} s)  peak RSS {inc_rss / 2**30:.2f} GiB"
    )
    print(f"incremental / full: {inc_s / full_s:.1%}   heart_rate rows now {hr:,}")

    noop_s, _, code = run_dbt(env, "build")
    if code:
        return code
    dbt_s, _, _ = split_times(workdir / "target", "noop")
    print(
        f"rerun, no new files: {noop_s:.1f} s (dbt's own run {dbt_s:.1f} s; the rest is start-up: imports, loading the parse)"
    )

    # the floor: dbt starting, loading the parse and finding nothing to do (no hooks, no nodes)
    empty_s, _, code = run_dbt(env, "build", "--select", "tag:bench_selects_nothing")
    if code:
        return code
    print(
        f"dbt build selecting nothing (dbt's start-up alone): {empty_s:.1f} s = {empty_s / full_s:.1%} of the full build"
    )

    spec = workdir / "warm.json"
    spec.write_text(json.dumps({"env": env, "landing": str(landing), "shape": shape}))
    code = subprocess.call([sys.executable, __file__, "--warm-child", str(spec)], env=env)
    if code:
        return code
    warm = json.loads(spec.read_text())
    print(
        f"long-lived dbt process (start-up {warm['import'] + warm['load_manifest']:.1f} s and a first build "
        f"{warm['first']:.1f} s once): rerun with nothing new {warm['noop']:.1f} s, "
        f"incremental (+{warm['added']:,} readings) {warm['incremental']:.1f} s "
        f"= {warm['incremental'] / full_s:.1%} of the full build"
    )
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
