#!/usr/bin/env python
"""The dbt build on Spark + Delta Lake beside DuckDB, on the same landing data (a script, figures only).

    python tests/bench/bench_spark.py [--heart-rate-rows 1000000] [--workdir DIR] [--keep]

1. Generates a landing zone as tests/bench/bench_dbt.py does (heart-rate readings at 1 Hz, workouts,
   profiles, gym visits), and a copy of it for the second engine.
2. DuckDB (target `dev`): a full `dbt build`, then ~1 % more data and an incremental build, then a
   rerun with nothing new; each build a `dbt` child process, as bench_dbt.py runs them.
3. Spark (target `spark`: dbt-spark method session, local[FITLAKE_SPARK_CORES], Delta tables): the
   same three builds in one child process running dbt in-process (dbtRunner), so the JVM starts
   once (in the first build's time) and the catalog can stay in memory.
Each engine's figures: wall time per build, the peak memory of its processes together (the Spark
JVM included, sampled every 0.1 s), and the rows of the main tables.
"""

from __future__ import annotations

import argparse
import json
import os
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
import bench_dbt  # noqa: E402  (the same data generator and dbt arguments)

from tests.support.spark_delta import spark_jars  # noqa: E402

TABLES = (
    "bronze.kafka_multiplex_bz",
    "silver.heart_rate",
    "silver.workout_bpm",
    "gold.workout_bpm_summary",
    "gold.gym_summary",
)
PHASES = ("full build", "incremental build", "rerun, nothing new")


def measured(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """Run `cmd`; (wall seconds, peak RSS of the process and its descendants in bytes, output)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read().decode(errors="replace")
    code = proc.wait()
    done.set()
    sampler.join()
    if code != 0:
        print(out[-6000:])
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed (exit {code})")
    return time.perf_counter() - start, peak, out


def duckdb_engine(env: dict, landing: Path, warehouse: Path, shape: dict) -> dict:
    figures: dict = {"seconds": {}, "peak": 0}
    for phase in PHASES:
        if phase == "incremental build":
            with duckdb.connect() as con:
                figures["added"] = bench_dbt.generate_increment(landing, shape, con)
        seconds, peak, _ = measured([str(bench_dbt.DBT), *bench_dbt.dbt_args(env, "build")], env)
        figures["seconds"][phase] = seconds
        figures["peak"] = max(figures["peak"], peak)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        figures["rows"] = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}
    return figures


def spark_child(spec_path: Path) -> int:
    """In the Spark child: the three builds through one dbtRunner, then the row counts."""
    spec = json.loads(spec_path.read_text())
    os.environ.update(spec["env"])
    from dbt.cli.main import dbtRunner
    from pyspark.sql import SparkSession

    figures: dict = {"seconds": {}}
    for phase in PHASES:
        if phase == "incremental build":
            with duckdb.connect() as con:
                figures["added"] = bench_dbt.generate_increment(Path(spec["landing"]), spec["shape"], con)
        start = time.perf_counter()
        result = dbtRunner().invoke(bench_dbt.dbt_args(spec["env"], "build"))
        if not result.success:
            print(f"spark {phase} failed: {result.exception or result.result}")
            return 1
        figures["seconds"][phase] = time.perf_counter() - start
    spark = SparkSession.builder.getOrCreate()
    figures["rows"] = {t: spark.sql(f"select count(*) from {t}").collect()[0][0] for t in TABLES}
    spark.stop()
    spec_path.with_suffix(".out.json").write_text(json.dumps(figures))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heart-rate-rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--spark-child", type=Path, help=argparse.SUPPRESS)  # internal: step 3
    args = parser.parse_args()
    if args.spark_child:
        return spark_child(args.spark_child)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fitlake_bench_spark_"))
    for name in ("landing-duckdb", "landing-spark", "warehouse", "spark", "target-duckdb", "target-spark"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    warehouse = workdir / "warehouse" / "fitlake.duckdb"
    warehouse.parent.mkdir(parents=True)
    base = dict(os.environ, **{k: v for k, v in bench_dbt.DBT_ENV.items() if k.startswith("DBT_")})
    duckdb_env = dict(
        base,
        FITLAKE_DBT_TARGET="dev",
        FITLAKE_LANDING_ROOT=str(workdir / "landing-duckdb"),
        FITLAKE_WAREHOUSE=str(warehouse),
        BENCH_TARGET=str(workdir / "target-duckdb"),
        BENCH_LOGS=str(workdir / "logs-duckdb"),
    )
    spark_env = dict(
        base,
        FITLAKE_DBT_TARGET="spark",
        FITLAKE_LANDING_ROOT=str(workdir / "landing-spark"),
        FITLAKE_SPARK_WAREHOUSE=str(workdir / "spark"),
        FITLAKE_SPARK_CATALOG="in-memory",
        FITLAKE_SPARK_JARS=spark_jars(),
        BENCH_TARGET=str(workdir / "target-spark"),
        BENCH_LOGS=str(workdir / "logs-spark"),
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")

    t = time.perf_counter()
    (workdir / "landing-duckdb").mkdir(parents=True)
    with duckdb.connect() as con:
        shape = bench_dbt.generate_full(workdir / "landing-duckdb", args.heart_rate_rows, con)
    shutil.copytree(workdir / "landing-duckdb", workdir / "landing-spark")
    rows = shape["rows_per_partition"] * bench_dbt.PARTITIONS
    print(f"generated {rows:,} heart-rate rows (and a copy for the second engine) in {time.perf_counter() - t:.1f} s")
    for env in (duckdb_env, spark_env):
        bench_dbt.run_dbt(env, "parse")

    results = {"duckdb": duckdb_engine(duckdb_env, workdir / "landing-duckdb", warehouse, shape)}
    spec = workdir / "spark-child.json"
    spec.write_text(json.dumps({"env": spark_env, "landing": str(workdir / "landing-spark"), "shape": shape}))
    _, spark_peak, _ = measured([sys.executable, __file__, "--spark-child", str(spec)], spark_env)
    results["spark"] = dict(json.loads(spec.with_suffix(".out.json").read_text()), peak=spark_peak)

    d, s = results["duckdb"], results["spark"]
    print(f"\n{'build (same data on both)':40} {'duckdb':>9} {'spark':>9} {'spark/duckdb':>13}")
    for phase in PHASES:
        label = f"{phase} (+{d['added']:,} readings)" if phase == "incremental build" else phase
        if phase == "full build":
            label += ", spark incl. JVM start"
        ds, ss = d["seconds"][phase], s["seconds"][phase]
        print(f"{label:40} {ds:8.1f}s {ss:8.1f}s {ss / ds:12.1f}x")
    print(f"{'peak memory, all processes (GiB)':40} {d['peak'] / 2**30:9.2f} {s['peak'] / 2**30:9.2f}")
    for t in TABLES:
        same = "equal" if d["rows"][t] == s["rows"][t] else "DIFFERENT"
        print(f"  rows {t:32} {d['rows'][t]:>12,} {s['rows'][t]:>12,}  {same}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
