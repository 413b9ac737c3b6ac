"""`make demo`: embedded stack, a simulated day, one cycle through the real Airflow scheduler, a report.

    python -m launchers.run_demo [--members 200] [--gyms 5] [--days 1] [--seed 42]

Airflow home: $FITLAKE_AIRFLOW_HOME (default .airflow/ in the repository, SQLite metadata); the same home
`make airflow` opens afterwards, with this demo's runs in it. The embedded broker is left running
(`make stack-down` stops it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from launchers import REPO_ROOT
from launchers.airflow_api import AirflowApi
from launchers.airflow_env import VENV_BIN, airflow_env, prepare_home
from launchers.cycle import LANDING_DAGS, TRANSFORM_DAG, describe_run, run_cycle
from launchers.pipeline import ensure_manifest, format_report, in_env, warehouse_report
from launchers.standalone import Standalone


def step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--gyms", type=int, default=5)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FITLAKE_AIRFLOW_PORT", "8080")))
    args = parser.parse_args(argv)

    home = Path(os.environ.get("FITLAKE_AIRFLOW_HOME") or REPO_ROOT / ".airflow")
    # the demo drives the DAGs itself: no schedule fires while it runs
    env = airflow_env(home, port=args.port, extra={"FITLAKE_SQL_SCHEDULE": "none", "FITLAKE_KAFKA_SCHEDULE": "none"})
    started = time.monotonic()

    t = step(f"Airflow home {home} (SQLite metadata, pool duckdb_warehouse with 1 slot, login)")
    login = prepare_home(env)
    print(f"    ready in {time.monotonic() - t:.0f}s")
    if login.created:
        print(f"    login {login.username} / {login.password} (generated once, kept in {login.path})")
    t = step("dbt manifest for Cosmos (dbt parse when the project changed)")
    print(f"    {ensure_manifest(env)} ({time.monotonic() - t:.0f}s)")

    step("embedded stack: Kafka-protocol broker + SQL stand-in")
    from ingestion.stack import stack_up

    for key, value in stack_up(in_env(env)).items():
        print(f"    {key}: {value}")

    step(f"simulate {args.members} members, {args.gyms} gyms, {args.days} day(s), seed {args.seed}")
    simulated = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "ingestion", "simulate", f"--members={args.members}",
         f"--gyms={args.gyms}", f"--days={args.days}", f"--seed={args.seed}"],
        env=env,
        cwd=REPO_ROOT,
    )  # fmt: skip
    if simulated.returncode:
        print(
            "\nthe simulation failed (its error is above). A second demo on the same data clashes with the "
            "first one: `make clean` (removes data/ and .airflow/) and `make demo` again, or add a day with "
            "`.venv/bin/python -m ingestion simulate --seed <another>`.",
            file=sys.stderr,
        )
        return simulated.returncode

    t = step("Airflow: scheduler, triggerer, DAG processor and API server (airflow standalone)")
    airflow = Standalone(env)
    try:
        airflow.start(timeout=300)
        api = AirflowApi(airflow.url)
        api.login(login.username, login.password)
        api.wait_for_dags(*LANDING_DAGS, TRANSFORM_DAG)
        api.unpause(*LANDING_DAGS, TRANSFORM_DAG)
        print(f"    up in {time.monotonic() - t:.0f}s on {airflow.url}")

        t = step("one cycle through the scheduler: land_azure_sql and land_kafka together, then transform_dbt")
        cycle = run_cycle(api)
        for run in [*cycle.landings, *cycle.transforms]:
            print("    " + describe_run(run))
            if run.dag_id == TRANSFORM_DAG and not run.built:
                print("      (found nothing new: the first transform had built both landings)")
        failed = [r for r in [*cycle.landings, *cycle.transforms] if r.state != "success"]
        gold = cycle.gold_updated
        print(
            f"    cycle {cycle.seconds:.0f}s"
            + (f"; first landing to gold updated {(gold - cycle.started).total_seconds():.0f}s" if gold else "")
        )
        if failed:
            print(f"\n{', '.join(r.dag_id for r in failed)} failed: see the task logs in the UI (`make airflow`) "
                  f"or under {home / 'logs'}", file=sys.stderr)  # fmt: skip
            return 1
    finally:
        print("    stopping Airflow ...", flush=True)
        airflow.stop()

    step("warehouse")
    os.environ.update({k: v for k, v in env.items() if k.startswith("FITLAKE_")})
    from fitlake_common import config

    print(format_report(warehouse_report(config.WAREHOUSE), docs_dir=config.DBT_DOCS_DIR))
    print(
        f"\ndemo finished in {time.monotonic() - started:.0f}s. `make airflow` opens the UI on the same data "
        f"(login {login.username}, password in {login.path}); `make stack-down` stops the embedded broker."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
