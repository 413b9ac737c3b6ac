"""docker-compose.yml: structure, images, healthchecks, dependency conditions, env wiring.

No Docker engine runs here, so this checks the file the way `docker compose config` would read it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
LONG_RUNNING = ["postgres", "kafka", "sqlserver", *AIRFLOW]
ONE_SHOT = ["sqlserver-init", "source-init", "simulator", "airflow-init"]
DAG_ENV = [
    "FITLAKE_KAFKA_BOOTSTRAP",
    "FITLAKE_SOURCE_ODBC",
    "FITLAKE_SOURCE_PASSWORD",
    "FITLAKE_LANDING_ROOT",
    "FITLAKE_WAREHOUSE",
]


def env_of(service: str) -> dict:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment should be a mapping"
    return env


def test_every_component_is_there():
    assert set(SERVICES) == set(LONG_RUNNING + ONE_SHOT)
    assert "x-airflow-common" in COMPOSE


@pytest.mark.parametrize(
    "service,image",
    [
        ("postgres", r"^postgres:\d+"),
        ("kafka", r"^apache/kafka:\d+\.\d+"),
        ("sqlserver", r"^mcr\.microsoft\.com/(mssql/server|azure-sql-edge)"),
        ("sqlserver-init", r"^mcr\.microsoft\.com/mssql/server"),
    ],
)
def test_images_are_pinned_upstream_images(service, image):
    assert re.match(image, SERVICES[service]["image"])


def test_kafka_runs_in_kraft_mode():
    env = env_of("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@kafka:")
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["KAFKA_ADVERTISED_LISTENERS"].endswith("kafka:9092")


@pytest.mark.parametrize("service", ["source-init", "simulator", "airflow-init", *AIRFLOW])
def test_fitlake_services_share_one_image_built_from_the_repo(service):
    spec = SERVICES[service]
    assert spec["image"] == "fitlake-airflow:latest"
    dockerfile = REPO_ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    assert "msodbcsql18" in text and "requirements.txt" in text and "dbt parse" in text


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_services_have_healthchecks_and_restart(service):
    check = SERVICES[service]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert {"interval", "timeout", "retries"} <= set(check)
    assert SERVICES[service]["restart"] == "unless-stopped"


@pytest.mark.parametrize("service", ONE_SHOT)
def test_one_shot_services_do_not_restart(service):
    assert SERVICES[service]["restart"] == "no"
    assert "healthcheck" not in SERVICES[service]


def test_dependencies_wait_for_health_or_completion():
    for name, spec in SERVICES.items():
        for dependency, condition in (spec.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
    for name in AIRFLOW:
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    scheduler = SERVICES["airflow-scheduler"]["depends_on"]
    assert scheduler["kafka"]["condition"] == "service_healthy"
    assert scheduler["source-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["source-init"]["depends_on"]["sqlserver-init"]["condition"] == "service_completed_successfully"


def test_no_dependency_cycles():
    graph = {name: set(spec.get("depends_on") or {}) for name, spec in SERVICES.items()}
    done: set[str] = set()
    while graph.keys() - done:
        ready = {n for n in graph.keys() - done if graph[n] <= done}
        assert ready, f"cycle among {sorted(graph.keys() - done)}"
        done |= ready


@pytest.mark.parametrize("service", ["source-init", "simulator", *AIRFLOW, "airflow-init"])
def test_dags_and_ingestion_are_pointed_at_the_services(service):
    env = env_of(service)
    for name in DAG_ENV:
        assert name in env, f"{service} misses {name}"
    assert env["FITLAKE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "Driver={ODBC Driver 18 for SQL Server}" in env["FITLAKE_SOURCE_ODBC"]
    assert "Server=tcp:sqlserver,1433" in env["FITLAKE_SOURCE_ODBC"]
    assert "pwd" not in env["FITLAKE_SOURCE_ODBC"].lower(), "the password comes from FITLAKE_SOURCE_PASSWORD"
    assert env["FITLAKE_SOURCE_PASSWORD"].startswith("${FITLAKE_SOURCE_PASSWORD:?")
    assert env["FITLAKE_WAREHOUSE"].startswith("/opt/fitlake/data/")
    assert env["FITLAKE_LANDING_ROOT"].startswith("/opt/fitlake/data/")


@pytest.mark.parametrize("service", [*AIRFLOW, "airflow-init"])
def test_airflow_components_share_metadata_db_secrets_and_volumes(service):
    env = env_of(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:${POSTGRES_PASSWORD")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/fitlake/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/fitlake/dags/plugins"
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "false"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
    volumes = SERVICES[service]["volumes"]
    assert "./dags:/opt/fitlake/dags:ro" in volumes
    assert "fitlake-data:/opt/fitlake/data" in volumes


def test_airflow_commands():
    commands = {name: SERVICES[name]["command"] for name in AIRFLOW}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    init = "\n".join(SERVICES["airflow-init"]["command"])
    assert "airflow db migrate" in init and "airflow pools set duckdb_warehouse 1" in init


def test_sql_server_is_initialised_with_the_dbo_tables():
    assert "CREATE DATABASE fitlake" in " ".join(SERVICES["sqlserver-init"]["command"])
    assert SERVICES["source-init"]["command"] == ["python", "-m", "ingestion", "stack", "up"]
    assert SERVICES["simulator"]["command"][:4] == ["python", "-m", "ingestion", "simulate"]


def test_named_volumes_are_declared():
    declared = set(COMPOSE["volumes"])
    for name, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    assert {"postgres-data", "kafka-data", "mssql-data", "fitlake-data"} <= declared


def test_ui_port_and_secrets_come_from_env_file():
    assert SERVICES["airflow-apiserver"]["ports"] == ["${AIRFLOW_UI_PORT:-8080}:8080"]
    example = (REPO_ROOT / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", (REPO_ROOT / "docker-compose.yml").read_text()))
    assert required == {"FITLAKE_SOURCE_PASSWORD", "POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD"}
    for name in required | {"AIRFLOW_FERNET_KEY", "FITLAKE_SQL_SCHEDULE", "FITLAKE_KAFKA_SCHEDULE"}:
        assert re.search(rf"^{name}=", example, re.MULTILINE), f".env.example misses {name}"
    for line in example.splitlines():
        if "PASSWORD=" in line or "SECRET=" in line:
            assert "CHANGE-ME" in line, f"not a placeholder: {line}"
