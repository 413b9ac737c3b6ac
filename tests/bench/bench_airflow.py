#!/usr/bin/env python
"""Benchmark of a cycle through the real Airflow scheduler, beside a bare `dbt build` (a script, not a test).

    python tests/bench/bench_airflow.py [--cycles 3] [--heart-rate-rows 10000000] [--skip-large] [--workdir DIR]

A cycle is what the schedules do at the top of the hour: both landing DAGs triggered together, then the
transforms their Asset events schedule, to the end of the last one. `airflow standalone` runs the
scheduler, the triggerer, the DAG processor and the API server (never `airflow dags test`); every figure
comes from the task instances, as the UI shows them.

(a) `--cycles` cycles at the demo scale: each simulates a day (200 members, 5 gyms, another seed) first.
(b) a cycle on a large history (the dbt bench's generator: `--heart-rate-rows` readings), produced into the
    embedded broker and the SQL stand-in and landed by the DAGs, then a cycle on a 1 % increment.

For each cycle it prints the landing time per DAG; the transform's wall time (queued to end) and the part
after the last landing ended (before that, the build cannot have the data); its tasks, their task time
and the gaps between them; a bare `dbt build` of the same work right after (the warehouse as it was
before the cycle, copied, and the same landing zone: the warehouse is free); their ratio; and the time
from the first landing's start to gold updated. Figures, never assertions.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent
sys.path[:0] = [str(REPO), str(REPO / "dags"), str(Path(__file__).resolve().parent)]

from launchers.airflow_api import AirflowApi  # noqa: E402
from launchers.airflow_env import airflow_env, free_port, prepare_home  # noqa: E402
from launchers.cycle import LANDING_DAGS, PRODUCER, TRANSFORM_DAG, CycleTiming, RunTiming, run_cycle  # noqa: E402
from launchers.pipeline import in_env  # noqa: E402
from launchers.standalone import Standalone  # noqa: E402

DBT = Path(sys.executable).with_name("dbt")
GOALS = {"transform_demo": 2.0, "transform_large": 1.5, "cycle_demo": 30.0, "cycle_increment": 45.0}


class Installation:
    """A data root, an Airflow home, the embedded stack and `airflow standalone`, driven over the REST API."""

    def __init__(self, root: Path, kafka_partitions: int = 3, alternative: dict | None = None):
        self.root = root
        self.env = airflow_env(
            root / "airflow",
            data_root=root / "data",
            port=free_port(),
            isolated_ports=True,
            extra={
                "FITLAKE_SQL_SCHEDULE": "none",
                "FITLAKE_KAFKA_SCHEDULE": "none",
                "FITLAKE_KAFKA_PARTITIONS": str(kafka_partitions),
                "FITLAKE_DBT_MANIFEST": str(REPO / "dbt_project" / "target" / "manifest.json"),
                **(alternative or {}),
            },
        )
        self.settings = in_env(self.env)
        self.airflow: Standalone | None = None
        self.api: AirflowApi | None = None

    @property
    def warehouse(self) -> Path:
        return self.settings.data_root / "warehouse" / "fitlake.duckdb"

    def start(self) -> Installation:
        from ingestion.stack import stack_up

        login = prepare_home(self.env)
        stack_up(self.settings)
        started = time.monotonic()
        self.airflow = Standalone(self.env, log_path=self.root / "standalone.log").start(timeout=300)
        self.api = AirflowApi(self.airflow.url)
        self.api.login(login.username, login.password)
        self.api.wait_for_dags(*LANDING_DAGS, TRANSFORM_DAG)
        self.api.unpause(*LANDING_DAGS, TRANSFORM_DAG)
        print(f"  airflow standalone up in {time.monotonic() - started:.0f} s ({self.airflow.url})", flush=True)
        return self

    def stop(self) -> None:
        from ingestion.stack import stack_down

        if self.airflow is not None:
            self.airflow.stop()
        stack_down(self.settings)

    def copy_warehouse(self, destination: Path) -> Path | None:
        """The warehouse as it is now (no transform runs between cycles), for the bare build to start from."""
        shutil.rmtree(destination.parent, ignore_errors=True)
        destination.parent.mkdir(parents=True)
        if not self.warehouse.exists():
            return None
        shutil.copy(self.warehouse, destination)
        return destination

    def bare_build(self, before: Path | None, as_of_date: str) -> float:
        """`dbt build` as a user runs it by hand: the same landing zone, a copy of the warehouse before the cycle."""
        work = self.root / "bare"
        warehouse = work / "warehouse" / "fitlake.duckdb"
        shutil.rmtree(work / "warehouse", ignore_errors=True)
        warehouse.parent.mkdir(parents=True)
        if before is not None:
            shutil.copy(before, warehouse)
        env = {
            **os.environ,
            **{k: v for k, v in self.env.items() if k.startswith("DBT_")},
            "FITLAKE_WAREHOUSE": str(warehouse),
            "FITLAKE_LANDING_ROOT": str(self.settings.landing_root),
        }
        args = ["--project-dir", str(REPO / "dbt_project"), "--profiles-dir", str(REPO / "dbt_project"),
                "--target-path", str(work / "target"), "--log-path", str(work / "logs")]  # fmt: skip
        if not (work / "target" / "partial_parse.msgpack").exists():  # a user's project is parsed already
            subprocess.run([str(DBT), "parse", "--quiet", *args], env=env, check=True)
        started = time.monotonic()
        done = subprocess.run(
            [str(DBT), "build", "--quiet", "--vars", json.dumps({"as_of_date": as_of_date}), *args],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
        if done.returncode:
            print(f"  bare dbt build failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        return seconds


# --- data ------------------------------------------------------------------------------------------


def simulate_day(inst: Installation, seed: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "ingestion", "simulate", "--members=200", "--gyms=5", "--days=1", f"--seed={seed}"],
        env=inst.env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def produce_generated(inst: Installation, generated: Path) -> int:
    """Kafka files of the dbt bench's generator, produced to their topic and partition in offset order."""
    import pyarrow.parquet as pq

    from ingestion.kafka import make_producer

    producer = make_producer(inst.settings, **{"linger.ms": 50, "compression.type": "lz4", "batch.size": 1_000_000})
    count = 0
    for path in sorted((generated / "kafka").glob("*/partition=*/*.parquet"), key=lambda p: (str(p.parent), p.name)):
        topic, partition = path.parent.parent.name, int(path.parent.name.split("=")[1])
        for batch in pq.ParquetFile(path).iter_batches(batch_size=50_000, columns=["key", "value"]):
            for key, value in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                while True:
                    try:
                        producer.produce(topic, key=key, value=value, partition=partition)
                        break
                    except BufferError:
                        producer.poll(0.05)
                count += 1
            producer.poll(0)
    if producer.flush(300):
        raise SystemExit("not every generated message reached the broker")
    return count


def insert_generated_sql(inst: Installation, generated: Path, work: Path) -> int:
    """SQL batches of the generator, written into the SQL stand-in as a recorded data set (replay)."""
    import pyarrow.parquet as pq

    from ingestion.replay import replay

    files = []
    for table, columns in (
        ("registered_users", ["user_id", "device_id", "mac_address", "registration_timestamp"]),
        ("gym_logins", ["mac_address", "gym", "login", "logout"]),
    ):
        rows = pq.read_table(sorted((generated / "sql" / table).rglob("*.parquet")), columns=columns).to_pylist()
        path = work / f"{table}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([v.isoformat() if hasattr(v, "isoformat") else v for v in row.values()])
        files.append(path)
    replay(inst.settings, files)
    return sum(1 for f in files for _ in f.open()) - len(files)


# --- one cycle, measured ---------------------------------------------------------------------------


def as_of_date_of(inst: Installation, run: RunTiming) -> str:
    summary = inst.api.xcom(TRANSFORM_DAG, run.run_id, PRODUCER, "return_value") or {}
    return summary.get("plan", {}).get("as_of_date") or run.queued.date().isoformat()


def measure_cycle(inst: Installation, label: str, before: Path | None) -> dict:
    print(f"\n{label}", flush=True)
    cycle: CycleTiming = run_cycle(inst.api, timeout=3600)
    for run in cycle.landings:
        workers = run.worker_tasks
        print(
            f"  {run.dag_id:<15} {run.state:<8} {run.seconds:6.1f} s  ({len(run.tasks)} tasks, "
            f"{sum(t.duration or 0 for t in workers):.1f} s of task time, gaps {run.gap_seconds:.1f} s)"
        )
    last_landing = max(r.end for r in cycle.landings)
    build = cycle.building
    figures = {"label": label, "cycle": cycle.seconds}
    for run in cycle.transforms:
        after_landing = (run.end - max(run.queued, last_landing)).total_seconds()
        what = "built" if run.built else "nothing new (dbt_build skipped)"
        workers = run.worker_tasks
        print(
            f"  {run.dag_id:<15} {run.state:<8} {run.seconds:6.1f} s  queued to end; {after_landing:.1f} s after "
            f"the last landing: {what}; {len(run.tasks)} tasks: {len(workers)} on workers "
            f"({sum(t.duration or 0 for t in workers):.1f} s of task time), {len(run.tasks) - len(workers)} in the "
            f"triggerer; gaps {run.gap_seconds:.1f} s"
        )
        if run is build:
            figures["transform"] = after_landing
            figures["transform_wall"] = run.seconds
    if build is None:
        print("  no transform built in this cycle")
        return figures
    bare = inst.bare_build(before, as_of_date_of(inst, build))
    figures["bare"] = bare
    figures["ratio"] = figures["transform"] / bare
    gold = cycle.gold_updated
    figures["to_gold"] = (gold - cycle.started).total_seconds() if gold else float("nan")
    print(f"  bare dbt build  {bare:6.1f} s  (the same work, by hand, right after)")
    print(
        f"  transform / bare dbt: {figures['ratio']:.2f}x; first landing to gold updated {figures['to_gold']:.1f} s; "
        f"whole cycle {cycle.seconds:.1f} s"
    )
    return figures


def demo_cycles(work: Path, cycles: int, alternative: dict | None = None) -> list[dict]:
    inst = Installation(work / "demo", alternative=alternative)
    print(f"(a) {cycles} cycles at the demo scale (a simulated day each: 200 members, 5 gyms)", flush=True)
    inst.start()
    results = []
    try:
        for i in range(1, cycles + 1):
            simulate_day(inst, seed=100 + i)
            before = inst.copy_warehouse(work / "before" / "fitlake.duckdb")
            results.append(measure_cycle(inst, f"cycle {i} (demo day, seed {100 + i})", before))
    finally:
        inst.stop()
    return results


def large_cycles(work: Path, rows: int) -> list[dict]:
    import duckdb
    from bench_dbt import PARTITIONS, generate_full, generate_increment

    inst = Installation(work / "large", kafka_partitions=PARTITIONS)
    print(f"\n(b) a cycle on {rows:,} heart-rate readings, then a cycle on a 1 % increment", flush=True)
    inst.start()
    results = []
    try:
        generated = work / "generated"
        shutil.rmtree(generated, ignore_errors=True)
        started = time.monotonic()
        with duckdb.connect() as con:
            shape = generate_full(generated, rows, con)
        messages = produce_generated(inst, generated)
        sql_rows = insert_generated_sql(inst, generated, work)
        print(f"  produced {messages:,} messages and wrote {sql_rows:,} SQL rows in {time.monotonic() - started:.0f} s")
        results.append(measure_cycle(inst, f"cycle on the history ({messages:,} messages)", None))

        shutil.rmtree(generated, ignore_errors=True)
        with duckdb.connect() as con:
            generate_increment(generated, shape, con, step=0)
        increment = produce_generated(inst, generated)
        visits = work / "gym_logins.csv"
        visits.write_text(
            "mac_address,gym,login,logout\n"
            + "".join(f"02:00:00:00:00:{i:02x},1,1700900000,1700903600\n" for i in range(25))
        )
        from ingestion.replay import replay

        replay(inst.settings, [visits])
        before = inst.copy_warehouse(work / "before" / "fitlake.duckdb")
        results.append(measure_cycle(inst, f"cycle on a 1 % increment ({increment:,} messages, 25 visits)", before))
    finally:
        inst.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--heart-rate-rows", type=int, default=10_000_000)
    parser.add_argument("--skip-large", action="store_true", help="only the demo-scale cycles")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--dags-folder",
        type=Path,
        help="measure another design of the same DAGs (e.g. an earlier commit's dags/): demo cycles only",
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra Airflow environment")
    args = parser.parse_args()
    alternative = dict(item.split("=", 1) for item in args.env)
    if args.dags_folder:
        folder = str(args.dags_folder.resolve())
        alternative |= {
            "AIRFLOW__CORE__DAGS_FOLDER": folder,
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(folder) / "plugins"),
            "PYTHONPATH": os.pathsep.join([folder, str(REPO)]),
        }
        args.skip_large = True
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fitlake_bench_airflow_"))
    print(f"work directory {work}; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    try:
        demo = demo_cycles(work, args.cycles, alternative) if args.cycles else []
        large = [] if args.skip_large else large_cycles(work, args.heart_rate_rows)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nsummary (load average {os.getloadavg()[0]:.1f} at the end)")
    print(f"  {'cycle':<52} {'transform':>9} {'bare dbt':>9} {'ratio':>6} {'to gold':>8} {'cycle':>7}")
    nan = float("nan")
    for row in [*demo, *large]:
        print(
            f"  {row['label'][:52]:<52} {row.get('transform', nan):8.1f}s {row.get('bare', nan):8.1f}s "
            f"{row.get('ratio', nan):5.2f}x {row.get('to_gold', nan):7.1f}s {row['cycle']:6.1f}s"
        )
    print(
        f"  goals: transform <= {GOALS['transform_demo']}x bare dbt at the demo scale, <= {GOALS['transform_large']}x "
        f"at 10M; a demo cycle <= {GOALS['cycle_demo']:.0f} s; the 10M + 1 % cycle <= {GOALS['cycle_increment']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
