"""A local Airflow home for FitLake: the environment, the metadata DB, the login and the warehouse pool.

Used by `make airflow`, `make demo` and tests/dags. Metadata is SQLite in AIRFLOW_HOME unless
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is already set (e.g. to the local PostgreSQL).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from fitlake_common.config import WAREHOUSE_POOL, WAREHOUSE_POOL_DESCRIPTION

from launchers import DAGS_DIR, REPO_ROOT

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(
    airflow_home: Path,
    *,
    data_root: Path | None = None,
    port: int = 8080,
    username: str = "admin",
    password: str = "admin",
    isolated_ports: bool = False,
    extra: dict | None = None,
) -> dict[str, str]:
    """The environment every Airflow process of a local FitLake installation runs with.

    ``isolated_ports`` also moves the scheduler's and triggerer's log servers (8793, 8794) to free
    ports, so a test instance can run beside another Airflow on the same machine.
    """
    airflow_home = Path(airflow_home).resolve()
    env = dict(os.environ)
    data_root = Path(data_root or env.get("FITLAKE_DATA_ROOT") or REPO_ROOT / "data").resolve()
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(DAGS_DIR / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": env.get("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True"),
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                airflow_home / "simple_auth_manager_passwords.json"
            ),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": env.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_ANALYTICS": "false",
            "FITLAKE_DATA_ROOT": str(data_root),
            "PYTHONPATH": os.pathsep.join([str(DAGS_DIR), str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
        }
    )
    if isolated_ports:
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
    env.update(extra or {})
    env["_FITLAKE_AIRFLOW_PASSWORD"] = password
    return env


def airflow(env: dict[str, str], *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "airflow"), *args], env=env, check=check, text=True, capture_output=capture)


def prepare_home(env: dict[str, str]) -> None:
    """Create AIRFLOW_HOME, the login, the metadata DB and the one-slot warehouse pool (idempotent)."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    username = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(":", 1)[0]
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords.write_text(json.dumps({username: env["_FITLAKE_AIRFLOW_PASSWORD"]}))
    passwords.chmod(0o600)
    # One interpreter for both steps (each Airflow start-up costs seconds): migrate, then the pool.
    script = (
        "from airflow.utils.db import upgradedb; upgradedb()\n"
        "from airflow.models.pool import Pool\n"
        f"Pool.create_or_update_pool({WAREHOUSE_POOL!r}, 1, {WAREHOUSE_POOL_DESCRIPTION!r}, include_deferred=False)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Airflow metadata DB set-up failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
