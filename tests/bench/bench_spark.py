#!/usr/bin/env python
"""The dbt build on Spark + Delta Lake beside DuckDB, on the same landing data (a script, figures only).

    python tests/bench/bench_spark.py [--heart-rate-rows 1000000] [--workdir DIR] [--keep]

1. Generates a landing zone as tests/bench/bench_dbt.py does (heart-rate readings at 1 Hz, workouts,
   profiles, gym visits).
2. A full `dbt build` on the DuckDB target (`dev`) and on the `spark` target (dbt-spark, method
   session: Spark local[FITLAKE_SPARK_CORES] inside the dbt process, Delta tables, Derby metastore),
   each in a child process.
3. Lands ~1 % more data, an incremental `dbt build` on both, then a rerun with nothing new.
Every build prints wall time and the peak memory of the dbt process with all its descendants (the
Spark JVM included), sampled every 0.1 s, and the rows of the main tables on both engines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))
import bench_dbt  # noqa: E402  (the same data generator)

from tests.support.spark_delta import spark_jars  # noqa: E402

TABLES = (
    "bronze.kafka_multiplex_bz",
    "silver.heart_rate",
    "silver.workout_bpm",
    "gold.workout_bpm_summary",
    "gold.gym_summary",
)


def run_measured(env: dict, *args: str) -> tuple[float, int]:
    """dbt in a child process: (wall seconds, peak RSS of it and its descendants, in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(bench_dbt.DBT), *bench_dbt.dbt_args(env, *args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    code = proc.wait()
    done.set()
    sampler.join()
    if code != 0:
        print(out.decode()[-6000:])
        raise SystemExit(f"dbt {' '.join(args)} failed (exit {code})")
    return time.perf_counter() - start, peak


def duckdb_counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def spark_counts(env: dict) -> dict[str, int]:
    """Row counts on Spark, read through `dbt show` (one more JVM start)."""
    query = " union all ".join(f"select '{t}' as relation, count(*) as n from {t}" for t in TABLES)
    out = subprocess.run(
        [str(bench_dbt.DBT), *bench_dbt.dbt_args(env, "show", "--inline", query, "--limit", "20", "--output", "json")],
        env=env,
        capture_output=True,
        text=True,
    )
    match = re.search(r'\{\s*"show".*\}', out.stdout, re.S)
    return {row["relation"]: int(row["n"]) for row in json.loads(match.group(0))["show"]} if match else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heart-rate-rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fitlake_bench_spark_"))
    for name in ("landing", "warehouse", "spark", "target-duckdb", "target-spark"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    landing, warehouse = workdir / "landing", workdir / "warehouse" / "fitlake.duckdb"
    landing.mkdir(parents=True)
    warehouse.parent.mkdir(parents=True)
    common = dict(
        os.environ,
        **{k: v for k, v in bench_dbt.DBT_ENV.items() if k.startswith("DBT_")},
        FITLAKE_LANDING_ROOT=str(landing),
        BENCH_LOGS=str(workdir / "logs"),
    )
    engines = {
        "duckdb": dict(
            common,
            FITLAKE_DBT_TARGET="dev",
            FITLAKE_WAREHOUSE=str(warehouse),
            BENCH_TARGET=str(workdir / "target-duckdb"),
        ),
        "spark": dict(
            common,
            FITLAKE_DBT_TARGET="spark",
            FITLAKE_SPARK_WAREHOUSE=str(workdir / "spark"),
            FITLAKE_SPARK_JARS=spark_jars(),
            BENCH_TARGET=str(workdir / "target-spark"),
        ),
    }
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")

    t = time.perf_counter()
    with duckdb.connect() as con:
        shape = bench_dbt.generate_full(landing, args.heart_rate_rows, con)
    rows = shape["rows_per_partition"] * bench_dbt.PARTITIONS
    print(f"generated {rows:,} heart-rate rows in {time.perf_counter() - t:.1f} s")
    for env in engines.values():
        bench_dbt.run_dbt(env, "parse")

    figures: dict[str, dict[str, tuple[float, int]]] = {name: {} for name in engines}
    for name, env in engines.items():
        figures[name]["full build"] = run_measured(env, "build")
    counts_full = {"duckdb": duckdb_counts(warehouse), "spark": spark_counts(engines["spark"])}

    with duckdb.connect() as con:
        added = bench_dbt.generate_increment(landing, shape, con)
    for name, env in engines.items():
        figures[name][f"incremental (+{added:,} readings)"] = run_measured(env, "build")
    for name, env in engines.items():
        figures[name]["rerun, nothing new"] = run_measured(env, "build")
    counts_inc = {"duckdb": duckdb_counts(warehouse), "spark": spark_counts(engines["spark"])}

    print(f"\n{'build':34} {'duckdb s':>9} {'peak GiB':>9} {'spark s':>9} {'peak GiB':>9} {'spark/duckdb':>13}")
    for phase in figures["duckdb"]:
        (d_s, d_rss), (s_s, s_rss) = figures["duckdb"][phase], figures["spark"][phase]
        print(f"{phase:34} {d_s:9.1f} {d_rss / 2**30:9.2f} {s_s:9.1f} {s_rss / 2**30:9.2f} {s_s / d_s:12.1f}x")
    for label, counts in (("after the full build", counts_full), ("after the increment", counts_inc)):
        print(
            f"rows {label}: "
            + ", ".join(f"{t} {counts['duckdb'][t]:,} / {counts['spark'].get(t, '?')}" for t in TABLES)
            + " (duckdb / spark)"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
