"""`make airflow`: Airflow standalone on the embedded stack; Ctrl-C stops everything cleanly.

    python -m launchers.run_airflow [--port 8080]

Airflow home: $FITLAKE_AIRFLOW_HOME (default .airflow/, SQLite metadata unless
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN points elsewhere). Listens on 127.0.0.1 unless FITLAKE_AIRFLOW_HOST says
otherwise. Login: admin, with a password generated once per Airflow home and kept in it (printed when it is
made), or $FITLAKE_AIRFLOW_PASSWORD.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path

from launchers import REPO_ROOT
from launchers.airflow_env import airflow_env, prepare_home
from launchers.pipeline import ensure_manifest, in_env
from launchers.standalone import Standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FITLAKE_AIRFLOW_PORT", "8080")))
    args = parser.parse_args(argv)

    home = Path(os.environ.get("FITLAKE_AIRFLOW_HOME") or REPO_ROOT / ".airflow")
    env = airflow_env(home, port=args.port)
    print(f"Airflow home {home}: metadata DB, login and pool duckdb_warehouse ...", flush=True)
    login = prepare_home(env)
    print(f"dbt manifest: {ensure_manifest(env)}", flush=True)

    from ingestion.stack import stack_up

    for key, value in stack_up(in_env(env)).items():
        print(f"{key}: {value}", flush=True)

    # Ctrl-C (even when started in the background, which ignores SIGINT) and SIGTERM stop Airflow cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    airflow = Standalone(env)
    try:
        print("starting airflow standalone (about 20-60 s) ...", flush=True)
        airflow.start(timeout=240)
        password = (
            f"{login.password}   (generated now, kept in {login.path})"
            if login.created
            else f"(password: cat {login.path})"
        )
        print(
            f"\n  Airflow UI  {airflow.url}\n  login       {login.username} / {password}\n"
            f"  dbt docs    {airflow.url}/fitlake-docs/ (after a transform_dbt run; login required)\n"
            f"  logs        {airflow.log_path}\n\nDAGs start paused: unpause them in the UI. Ctrl-C stops Airflow.",
            flush=True,
        )
        while airflow.process.poll() is None:
            try:
                airflow.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        print(f"airflow standalone exited with {airflow.process.returncode}; see {airflow.log_path}")
        return airflow.process.returncode or 1
    except KeyboardInterrupt:
        print("\nstopping Airflow (SIGINT to standalone) ...", flush=True)
        code = airflow.stop()
        print(f"stopped (exit {code}). The embedded broker keeps running: `make stack-down`.")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
