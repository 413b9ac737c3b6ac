"""Settings, read once from environment variables, with defaults for the embedded stack.

Nothing here connects to anything; :func:`load_settings` only reads and validates.
Credentials never live in code: the ODBC connection string comes from the
environment (or an Airflow connection rendered into it) and is never logged.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ingestion.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]

KAFKA_TOPICS = ("user_info", "workout", "bpm")
KAFKA_OPTION_PREFIX = "FITLAKE_KAFKA_OPT_"


@dataclass(frozen=True)
class Settings:
    data_root: Path
    landing_root: Path
    source_odbc: str
    source_schema: str
    kafka_bootstrap: str | None
    source_dialect: str | None = None
    source_password: str | None = field(default=None, repr=False)
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    kafka_topics: tuple[str, ...] = KAFKA_TOPICS
    kafka_partitions: int = 3
    landing_file_max_bytes: int = 128 * 1024 * 1024
    sql_fetch_rows: int = 20_000
    sql_overlap: timedelta = timedelta(minutes=10)
    connect_retries: int = 3
    kafka_timeout_seconds: int = 10
    kafka_stall_seconds: int = 30  # a landing with no message for this long while short of its end fails
    retry_backoff_seconds: float = 1.0

    @property
    def stack_dir(self) -> Path:
        return self.data_root / "stack"

    @property
    def embedded_source_path(self) -> Path:
        return self.data_root / "source" / "azure_sql_standin.sqlite"

    def resolved_kafka_bootstrap(self) -> str:
        """The configured brokers, or the embedded broker's address from `stack up`."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        state_file = self.stack_dir / "kafka.json"
        try:
            return json.loads(state_file.read_text())["bootstrap"]
        except FileNotFoundError:
            raise ConfigError(
                "no Kafka brokers configured: set FITLAKE_KAFKA_BOOTSTRAP, or start the "
                "embedded broker with `make stack-up`"
            ) from None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _kafka_options(env: Mapping[str, str]) -> dict[str, str]:
    """FITLAKE_KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL becomes security.protocol=SASL_SSL."""
    options = {}
    for name, value in env.items():
        if name.startswith(KAFKA_OPTION_PREFIX) and len(name) > len(KAFKA_OPTION_PREFIX):
            key = name[len(KAFKA_OPTION_PREFIX) :].lower().replace("_", ".")
            options[key] = value
    return options


def embedded_odbc_connection_string(path: Path) -> str:
    return f"Driver=SQLite3;Database={path}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_root = Path(env.get("FITLAKE_DATA_ROOT") or REPO_ROOT / "data").resolve()
    landing_root = Path(env.get("FITLAKE_LANDING_ROOT") or data_root / "landing").resolve()
    source_schema = env.get("FITLAKE_SOURCE_SCHEMA") or "dbo"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", source_schema):
        raise ConfigError(f"FITLAKE_SOURCE_SCHEMA={source_schema!r} is not a plain SQL identifier")
    settings = Settings(
        data_root=data_root,
        landing_root=landing_root,
        source_odbc=env.get("FITLAKE_SOURCE_ODBC")
        or embedded_odbc_connection_string(data_root / "source" / "azure_sql_standin.sqlite"),
        source_schema=source_schema,
        source_dialect=env.get("FITLAKE_SOURCE_DIALECT") or None,
        source_password=env.get("FITLAKE_SOURCE_PASSWORD") or None,
        kafka_bootstrap=env.get("FITLAKE_KAFKA_BOOTSTRAP") or None,
        kafka_options=_kafka_options(env),
        kafka_partitions=_int(env, "FITLAKE_KAFKA_PARTITIONS", 3),
        landing_file_max_bytes=_int(env, "FITLAKE_LANDING_FILE_MAX_BYTES", 128 * 1024 * 1024, 1024),
        sql_fetch_rows=_int(env, "FITLAKE_SQL_FETCH_ROWS", 20_000),
        sql_overlap=timedelta(seconds=_int(env, "FITLAKE_SQL_OVERLAP_SECONDS", 600, 0)),
        connect_retries=_int(env, "FITLAKE_CONNECT_RETRIES", 3),
        kafka_timeout_seconds=_int(env, "FITLAKE_KAFKA_TIMEOUT_SECONDS", 10),
        kafka_stall_seconds=_int(env, "FITLAKE_KAFKA_STALL_SECONDS", 30),
    )
    return settings
