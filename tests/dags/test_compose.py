"""docker-compose.yml: structure, images, healthchecks, dependency conditions, env wiring.

No Docker engine runs here, so this checks the file the way `docker compose config` would read it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
WORKERS = ["airflow-worker-landing", "airflow-worker-dbt"]
SPARK = ["spark-master", "spark-worker", "spark-thrift"]
LONG_RUNNING = ["redis", "postgres", "kafka", "sqlserver", *AIRFLOW, *WORKERS, *SPARK]
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
        ("redis", r"^redis:\d+\.\d+"),
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


@pytest.mark.parametrize("service", ["source-init", "simulator", "airflow-init", *AIRFLOW, *WORKERS])
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


@pytest.mark.parametrize("service", ["source-init", "simulator", *AIRFLOW, *WORKERS, "airflow-init"])
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


@pytest.mark.parametrize("service", [*AIRFLOW, *WORKERS, "airflow-init"])
def test_airflow_components_share_metadata_db_secrets_and_volumes(service):
    env = env_of(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:${POSTGRES_PASSWORD")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:${POSTGRES_PASSWORD")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/fitlake/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/fitlake/dags/plugins"
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "false"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
    volumes = SERVICES[service]["volumes"]
    assert "./dags:/opt/fitlake/dags:ro" in volumes
    assert "airflow-logs:/opt/airflow/logs" in volumes


def mounts(service: str) -> dict[str, str]:
    """Mount point -> source[:ro] of a service's volumes."""
    result = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *mode = volume.split(":")
        result[target] = ":".join([source, *mode])
    return result


LANDING = "/opt/fitlake/data/landing"
SPARK_WAREHOUSE = "/opt/fitlake/spark/warehouse"


def test_the_landing_zone_is_one_volume_every_worker_and_spark_mount():
    for service in [*WORKERS, "spark-worker", "spark-thrift", "airflow-init"]:
        assert mounts(service)[LANDING].split(":")[0] == "fitlake-landing", service
    assert mounts("airflow-worker-landing")[LANDING] == "fitlake-landing", "the landers write it"
    for reader in ("airflow-worker-dbt", "spark-worker", "spark-thrift"):
        assert mounts(reader)[LANDING] == "fitlake-landing:ro", reader
    assert env_of("airflow-worker-dbt")["FITLAKE_LANDING_ROOT"] == LANDING


def test_the_warehouse_dbt_artefacts_and_docs_live_where_they_are_used():
    """The DuckDB file only on the dbt worker; the docs written there and served by the API server; the
    scheduler, the triggerer and the DAG processor need no data at all (they read the image's manifest)."""
    dbt = mounts("airflow-worker-dbt")
    assert dbt["/opt/fitlake/data/warehouse"] == "fitlake-warehouse"
    assert dbt["/opt/fitlake/data/dbt"] == "fitlake-dbt" and dbt["/opt/fitlake/data/dbt_docs"] == "fitlake-docs"
    assert env_of("airflow-worker-dbt")["FITLAKE_WAREHOUSE"].startswith("/opt/fitlake/data/warehouse/")
    assert mounts("airflow-apiserver")["/opt/fitlake/data/dbt_docs"] == "fitlake-docs:ro"
    users = [name for name in SERVICES if "fitlake-warehouse" in " ".join(SERVICES[name].get("volumes", []))]
    assert sorted(users) == ["airflow-init", "airflow-worker-dbt"]
    for name in ("airflow-scheduler", "airflow-triggerer", "airflow-dag-processor"):
        assert not [t for t in mounts(name) if t.startswith("/opt/fitlake/data")], name
    for name in ("spark-worker", "spark-thrift"):
        assert mounts(name)[SPARK_WAREHOUSE] == "spark-warehouse", "executors write the Delta files the driver plans"


def test_celery_workers_serve_the_landing_and_dbt_queues():
    env = env_of("airflow-worker-landing")
    assert (env["FITLAKE_LANDING_QUEUE"], env["FITLAKE_DBT_QUEUE"]) == ("landing", "dbt")
    landing = SERVICES["airflow-worker-landing"]["command"].split()
    dbt = SERVICES["airflow-worker-dbt"]["command"].split()
    assert landing[:2] == dbt[:2] == ["celery", "worker"]
    assert landing[landing.index("--queues") + 1].split(",") == ["landing", "default"]
    # DuckDB admits one writing process: one dbt worker, one slot
    assert dbt[dbt.index("--queues") + 1] == "dbt" and dbt[dbt.index("--concurrency") + 1] == "1"
    for name in WORKERS:
        spec = SERVICES[name]
        assert spec["environment"]["DUMB_INIT_SETSID"] == "0", "SIGTERM must reach Celery (warm shutdown)"
        assert "inspect ping" in spec["healthcheck"]["test"][1]
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy"
        assert spec["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert SERVICES["airflow-worker-landing"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "--requirepass" in SERVICES["redis"]["command"]


def test_spark_services_for_the_spark_target():
    """A standalone master and workers, and the Thrift server dbt talks to, in the `spark` profile."""
    for name in SPARK:
        spec = SERVICES[name]
        assert spec["profiles"] == ["spark"] and spec["image"] == "fitlake-spark:latest"
        assert (REPO_ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert SERVICES["spark-worker"]["command"][2] == "spark://spark-master:7077"
    thrift = SERVICES["spark-thrift"]["command"]
    assert thrift[:3] == ["spark-submit", "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"]
    assert thrift[thrift.index("--master") + 1] == "spark://spark-master:7077"
    assert "hive.server2.thrift.port=10000" in thrift and "spark-internal" in thrift
    env = env_of("airflow-worker-dbt")
    assert (env["FITLAKE_SPARK_METHOD"], env["FITLAKE_SPARK_HOST"], env["FITLAKE_SPARK_PORT"]) == (
        "thrift",
        "spark-thrift",
        "10000",
    )
    assert env["FITLAKE_DBT_TARGET"] == "${FITLAKE_DBT_TARGET:-duckdb}"
    dockerfile = (REPO_ROOT / "dags/deploy/spark.Dockerfile").read_text()
    assert "requirements-spark.txt" in dockerfile and "spark_delta/pom.xml" in dockerfile
    assert "spark-defaults.conf" in dockerfile
    assert 'dbt-spark[PyHive]"' in (REPO_ROOT / "dags/deploy/Dockerfile").read_text()


def test_spark_defaults_agree_with_the_profile_semantics():
    """The Thrift server's confs and the profile's session target give the models the same SQL."""
    defaults = dict(
        line.split(None, 1)
        for line in (REPO_ROOT / "dags/deploy/spark-defaults.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    profile = yaml.safe_load((REPO_ROOT / "dbt_project/profiles.yml").read_text())["fitlake"]["outputs"]["spark"]
    params = profile["server_side_parameters"]
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog", "spark.sql.sources.default",
                "spark.sql.session.timeZone", "spark.sql.legacy.timeParserPolicy",
                "spark.databricks.delta.snapshotPartitions"):  # fmt: skip
        assert defaults[key].strip() == str(params[key]), key
    assert defaults["spark.sql.ansi.enabled"].strip() == "false"  # dbt-spark's session setting
    for key in ("spark.sql.ansi.enabled", "spark.sql.session.timeZone", "spark.sql.legacy.timeParserPolicy"):
        assert str(params[f"set:hiveconf:{key}"]) == defaults[key].strip(), f"sent per thrift session: {key}"


@pytest.mark.parametrize("profile", [[], ["--profile", "spark"]])
def test_docker_compose_accepts_the_file_with_the_example_env(profile):
    """Debian's docker-compose reads the file as a deployment would: schema, anchors, interpolation."""
    assert shutil.which("docker-compose"), "docker-compose is not installed: run `make setup-dev`"
    done = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", *profile, "config", "-q"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


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
    assert {"postgres-data", "redis-data", "kafka-data", "mssql-data", "fitlake-landing", "spark-warehouse"} <= declared


def test_ui_port_and_secrets_come_from_env_file():
    assert SERVICES["airflow-apiserver"]["ports"] == ["${AIRFLOW_UI_PORT:-8080}:8080"]
    example = (REPO_ROOT / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", (REPO_ROOT / "docker-compose.yml").read_text()))
    assert required == {
        "FITLAKE_SOURCE_PASSWORD",
        "POSTGRES_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_ADMIN_PASSWORD",
        "REDIS_PASSWORD",
    }
    defaulted = set(re.findall(r"\$\{(\w+):-", (REPO_ROOT / "docker-compose.yml").read_text()))
    for name in required | defaulted | {"AIRFLOW_FERNET_KEY"}:
        assert re.search(rf"^{name}=", example, re.MULTILINE), f".env.example misses {name}"
    for line in example.splitlines():
        if "PASSWORD=" in line or "SECRET=" in line:
            assert "CHANGE-ME" in line, f"not a placeholder: {line}"
