"""`make demo`: embedded stack up, simulated data, the three DAGs through `airflow dags test`, a report.

    python -m launchers.run_demo [--members 200] [--gyms 5] [--days 2] [--seed 42]

Airflow home: $FITLAKE_AIRFLOW_HOME (default .airflow/ in the repository, SQLite metadata).
The embedded broker is left running (`make stack-down` stops it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from launchers import REPO_ROOT
from launchers.airflow_env import VENV_BIN, airflow_env, prepare_home
from launchers.pipeline import dags_test, ensure_manifest, format_report, in_env, warehouse_report


def step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--gyms", type=int, default=5)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of-date", default=None, help="dbt as_of_date (default: the run's logical date)")
    args = parser.parse_args(argv)

    home = Path(os.environ.get("FITLAKE_AIRFLOW_HOME") or REPO_ROOT / ".airflow")
    env = airflow_env(home)
    logs = home / "demo-logs"
    started = time.monotonic()

    t = step(f"Airflow home {home} (SQLite metadata, pool duckdb_warehouse with 1 slot)")
    prepare_home(env)
    print(f"    ready in {time.monotonic() - t:.0f}s")
    t = step("dbt manifest for Cosmos (dbt parse when the project changed)")
    print(f"    {ensure_manifest(env)} ({time.monotonic() - t:.0f}s)")

    step("embedded stack: Kafka-protocol broker + SQL stand-in")
    from ingestion.stack import stack_up

    for key, value in stack_up(in_env(env)).items():
        print(f"    {key}: {value}")

    step(f"simulate {args.members} members, {args.gyms} gyms, {args.days} day(s), seed {args.seed}")
    simulated = subprocess.run(
        [
            str(VENV_BIN / "python"),
            "-m",
            "ingestion",
            "simulate",
            f"--members={args.members}",
            f"--gyms={args.gyms}",
            f"--days={args.days}",
            f"--seed={args.seed}",
        ],
        env=env,
        cwd=REPO_ROOT,
    )
    if simulated.returncode:
        print(
            "\nthe simulation failed (its error is above). A second demo on the same data clashes with the "
            "first one: `make clean` (removes data/ and .airflow/) and `make demo` again, or add a day with "
            "`.venv/bin/python -m ingestion simulate --seed <another>`.",
            file=sys.stderr,
        )
        return simulated.returncode

    conf = {"as_of_date": args.as_of_date} if args.as_of_date else None
    for dag_id, dag_conf in (("land_azure_sql", None), ("land_kafka", None), ("transform_dbt", conf)):
        step(f"airflow dags test {dag_id}")
        done = dags_test(env, dag_id, dag_conf, log_dir=logs)
        summary = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if "landed " in line or "dbt docs:" in line or "DagRun Finished" in line
        ]
        for line in summary:
            print("    " + line.split("] ", 1)[-1][:200] if "] " in line else "    " + line[:200])
        print(
            f"    {dag_id}: {'success' if done.returncode == 0 else 'FAILED'} in {done.seconds:.0f}s "
            f"(full log in {logs})"
        )
        if done.returncode != 0:
            print((done.stdout + done.stderr)[-4000:])
            return done.returncode

    step("warehouse")
    settings_env = {k: v for k, v in env.items() if k.startswith("FITLAKE_")}
    os.environ.update(settings_env)
    from fitlake_common import config

    print(format_report(warehouse_report(config.WAREHOUSE), docs_dir=config.DBT_DOCS_DIR))
    print(
        f"\ndemo finished in {time.monotonic() - started:.0f}s. `make airflow` opens the UI on the same data; "
        "`make stack-down` stops the embedded broker."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
