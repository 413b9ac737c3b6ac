"""A local Airflow home for FitLake: the environment, the metadata DB, the login and the warehouse pool.

Used by `make airflow`, `make demo`, `make bench-airflow` and tests/dags. Metadata is SQLite in
AIRFLOW_HOME unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is already set.

Safe by default: the UI listens on 127.0.0.1 (FITLAKE_AIRFLOW_HOST to change it); the admin password
is generated once per Airflow home and kept there (FITLAKE_AIRFLOW_PASSWORD to choose it); the JWT
and API secrets are generated per home at their recommended length, never committed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fitlake_common.config import WAREHOUSE_POOL, WAREHOUSE_POOL_DESCRIPTION

from launchers import DAGS_DIR, REPO_ROOT

VENV_BIN = Path(sys.executable).parent
USERNAME = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
SECRETS_FILE = "fitlake_secrets.json"


# Warnings nobody needs to act on, silenced where they come from (every component logs them at start):
# - Cosmos asks for a lineage namespace and, on import, for the OpenLineage provider; FitLake's tasks are
#   no Cosmos operators, so neither would emit anything: the namespace is named, the hint is muted;
# - uvicorn asks Airflow's own log servers to pass --factory (its errors still show).
QUIET_LOGGING = {
    "AIRFLOW__OPENLINEAGE__NAMESPACE": "fitlake",
    "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "cosmos.operators.local=ERROR uvicorn.error=ERROR",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(payload, handle)
    path.chmod(0o600)


def home_secrets(airflow_home: Path) -> dict[str, str]:
    """The JWT signing key, the API secret key and the Fernet key of this home, generated on first use.

    HS512 wants a key of at least 64 bytes (PyJWT warns below that): 64 random bytes, URL-safe. The Fernet
    key encrypts connection passwords and trigger arguments: every component must have the same one.
    Left to Airflow, components started together (the CeleryExecutor's) could each write a generated key
    into a new airflow.cfg, and the triggerer then failed to decrypt the triggers the scheduler stored.
    """
    from cryptography.fernet import Fernet

    path = Path(airflow_home) / SECRETS_FILE
    try:
        stored = json.loads(path.read_text())
        if stored.get("jwt_secret") and stored.get("api_secret_key") and stored.get("fernet_key"):
            return stored
    except (OSError, ValueError):
        stored = {}
    stored = {
        "jwt_secret": stored.get("jwt_secret") or secrets.token_urlsafe(64),
        "api_secret_key": stored.get("api_secret_key") or secrets.token_urlsafe(64),
        "fernet_key": stored.get("fernet_key")
        or _configured_fernet_key(airflow_home)
        or Fernet.generate_key().decode(),
    }
    _private_json(path, stored)
    return stored


def _configured_fernet_key(airflow_home: Path) -> str | None:
    """The key an existing home's airflow.cfg holds: what its stored connections are encrypted with."""
    import configparser

    config = configparser.ConfigParser(interpolation=None)
    config.read(Path(airflow_home) / "airflow.cfg")
    return config.get("core", "fernet_key", fallback="").strip() or None


def airflow_env(
    airflow_home: Path,
    *,
    data_root: Path | None = None,
    port: int = 8080,
    host: str | None = None,
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
    host = host or env.get("FITLAKE_AIRFLOW_HOST") or "127.0.0.1"
    keys = home_secrets(airflow_home)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(DAGS_DIR / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": env.get("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True"),
            # a cycle lands five entities at once and builds once: enough slots for all of them
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "8"),
            # the scheduler looks for work every 0.1 s when idle (default 1 s): a task chain's gaps
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": env.get(
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "0.1"
            ),
            # a cycle's start (five landing tasks, the build, the watchers) keeps a 2-core machine busy: task
            # supervisors wait for the API server up to 30 s rather than 5 s, then retry, adding to the load
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": env.get("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "30"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / PASSWORDS_FILE),
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}",
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            **QUIET_LOGGING,
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
    return env


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    created: bool  # generated (or set) just now: show it once
    path: Path


def admin_login(env: dict[str, str]) -> Login:
    """The admin login of this home: FITLAKE_AIRFLOW_PASSWORD, else the one kept in the home, else a new one."""
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    chosen = env.get("FITLAKE_AIRFLOW_PASSWORD")
    try:
        kept = json.loads(path.read_text()).get(USERNAME)
    except (OSError, ValueError):
        kept = None
    if chosen and chosen != kept:
        _private_json(path, {USERNAME: chosen})
        return Login(USERNAME, chosen, True, path)
    if kept:
        return Login(USERNAME, kept, False, path)
    password = secrets.token_urlsafe(12)
    _private_json(path, {USERNAME: password})
    return Login(USERNAME, password, True, path)


def airflow(env: dict[str, str], *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "airflow"), *args], env=env, check=check, text=True, capture_output=capture)


def prepare_home(env: dict[str, str]) -> Login:
    """Create AIRFLOW_HOME, the login, the metadata DB and the one-slot warehouse pool (idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    login = admin_login(env)
    # One interpreter for both steps (each Airflow start-up costs seconds): migrate, then the pool.
    script = (
        "from airflow.utils.db import upgradedb; upgradedb()\n"
        "from airflow.models.pool import Pool\n"
        f"Pool.create_or_update_pool({WAREHOUSE_POOL!r}, 1, {WAREHOUSE_POOL_DESCRIPTION!r}, include_deferred=False)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Airflow metadata DB set-up failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    use_write_ahead_log(env)
    return login


def use_write_ahead_log(env: dict[str, str]) -> None:
    """SQLite metadata in WAL mode (kept in the file): readers no longer wait for a writer, nor writers for
    readers. The scheduler, the triggerer, the API server and every task supervisor share that one file."""
    import sqlite3

    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or f"sqlite:///{Path(env['AIRFLOW_HOME']) / 'airflow.db'}"
    if not url.startswith("sqlite:///"):
        return
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        con.execute("pragma journal_mode=wal")
