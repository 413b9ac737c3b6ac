"""Credentials through Airflow connections: `fitlake_source` (ODBC) and `fitlake_kafka`.

The first tests resolve settings in this process through Airflow's real secrets search path (the
`AIRFLOW_CONN_*` variables). The last ones run the landing DAGs on a real `airflow standalone` whose
configuration holds no FITLAKE_SOURCE_* variable and, of the FITLAKE_KAFKA_* ones, only the DAG's
schedule (`none`): the SQL source is a
PostgreSQL role that needs its password (SCRAM), given only as `AIRFLOW_CONN_FITLAKE_SOURCE` JSON;
the broker is known only through the `fitlake_kafka` connection, added over the REST API.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from ingestion.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_PASSWORD = f"pw-{uuid.uuid4().hex}"  # unique, so finding it in a log can only mean a leak
READER = "fitlake_reader"
# The one FITLAKE_KAFKA_* variable the connection_only keeps: the DAG schedule (`none`), not a setting of
# the broker, so that no scheduled run of land_kafka gets between the runs the tests trigger.
SCHEDULE_ONLY = "FITLAKE_KAFKA_SCHEDULE"


def conn_json(**fields) -> str:
    return json.dumps(fields)


@pytest.fixture
def resolve(monkeypatch):
    """landing_settings with the given environment as os.environ (Airflow reads AIRFLOW_CONN_* from there)."""
    from fitlake_common.connections import landing_settings

    def run(source: str, **env):
        for name in list(os.environ):
            if name.startswith(("FITLAKE_SOURCE_", "FITLAKE_KAFKA_", "FITLAKE_CONNECTIONS", "AIRFLOW_CONN_")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return landing_settings(source)

    return run


# --- resolution, through Airflow's secrets search path in this process --------------------------------


def test_connection_given_as_json_is_the_one_used(resolve):
    settings, origin = resolve(
        "sql",
        AIRFLOW_CONN_FITLAKE_SOURCE=conn_json(
            conn_type="odbc",
            host="tcp:fitlake.database.windows.net",
            port=1433,
            schema="fitlake",
            login="lander",
            password="from-the-connection",
            extra={"Encrypt": "yes", "TrustServerCertificate": "no"},
        ),
        FITLAKE_SOURCE_ODBC="Driver=SQLite3;Database=/elsewhere.sqlite",
        FITLAKE_SOURCE_PASSWORD="from-the-variable",
        FITLAKE_SOURCE_SCHEMA="sales",
    )
    assert origin == "Airflow connection `fitlake_source` (odbc)"
    assert settings.source_odbc == (
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:fitlake.database.windows.net,1433;"
        "Database=fitlake;Uid=lander;Encrypt=yes;TrustServerCertificate=no;"
    )
    assert settings.source_password == "from-the-connection"
    assert settings.source_schema == "sales", "not a credential: still from FITLAKE_SOURCE_SCHEMA"
    assert "from-the-connection" not in repr(settings)


def test_kafka_connection_extra_is_the_whole_client_config(resolve):
    settings, origin = resolve(
        "kafka",
        AIRFLOW_CONN_FITLAKE_KAFKA=conn_json(
            conn_type="kafka",
            extra={
                "bootstrap.servers": "broker1:9093,broker2:9093",
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": "lander",
                "sasl.password": "kafka-secret",
                "enable.ssl.certificate.verification": False,
            },
        ),
        FITLAKE_KAFKA_BOOTSTRAP="ignored:9092",
        FITLAKE_KAFKA_OPT_CLIENT_ID="ignored-too",
        FITLAKE_KAFKA_TIMEOUT_SECONDS="7",
    )
    assert origin == "Airflow connection `fitlake_kafka` (kafka)"
    assert settings.resolved_kafka_bootstrap() == "broker1:9093,broker2:9093"
    assert dict(settings.kafka_options) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "lander",
        "sasl.password": "kafka-secret",
        "enable.ssl.certificate.verification": "false",
    }
    assert settings.kafka_timeout_seconds == 7


def test_without_a_connection_the_variables_apply(resolve):
    settings, origin = resolve(
        "sql", FITLAKE_SOURCE_ODBC="Driver={PostgreSQL Unicode};Server=db", FITLAKE_SOURCE_PASSWORD="pw-var"
    )
    assert origin == "FITLAKE_SOURCE_* variables (no Airflow connection `fitlake_source`)"
    assert (settings.source_odbc, settings.source_password) == ("Driver={PostgreSQL Unicode};Server=db", "pw-var")
    settings, origin = resolve("kafka", FITLAKE_KAFKA_BOOTSTRAP="b:9092", FITLAKE_CONNECTIONS="off")
    assert origin == "FITLAKE_KAFKA_* variables (FITLAKE_CONNECTIONS=off)"
    assert settings.kafka_bootstrap == "b:9092"


def test_another_connection_id_can_be_named(resolve):
    settings, origin = resolve(
        "kafka",
        FITLAKE_KAFKA_CONN_ID="kafka_eu",
        AIRFLOW_CONN_KAFKA_EU=conn_json(conn_type="kafka", extra={"bootstrap.servers": "eu:9092"}),
    )
    assert origin == "Airflow connection `kafka_eu` (kafka)" and settings.kafka_bootstrap == "eu:9092"


@pytest.mark.parametrize(
    "source,conn_id,variables",
    [("sql", "fitlake_source", "FITLAKE_SOURCE_*"), ("kafka", "fitlake_kafka", "FITLAKE_KAFKA_*")],
)
def test_a_required_connection_that_is_missing_fails_naming_it(resolve, source, conn_id, variables):
    with pytest.raises(ConfigError) as error:
        resolve(source, FITLAKE_CONNECTIONS="required", FITLAKE_SOURCE_ODBC="Driver=SQLite3;Database=x")
    message = str(error.value)
    assert f"Airflow connection `{conn_id}` not found" in message
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in message
    assert f"airflow-connections-{conn_id.replace('_', '-')}" in message  # its Key Vault secret name
    assert variables in message


@pytest.mark.parametrize(
    "source,connection,expected",
    [
        (
            "sql",
            {"conn_type": "postgres", "host": "db"},
            "has type 'postgres'; the SQL source needs one of odbc, mssql",
        ),
        ("sql", {"conn_type": "odbc", "extra": {"driver": "Evil"}}, "allow_driver_in_extra"),
        ("kafka", {"conn_type": "kafka", "extra": {"group.id": "g"}}, "has no `bootstrap.servers` in its extra"),
        ("kafka", {"conn_type": "odbc", "host": "b"}, "Kafka needs a `kafka` connection"),
    ],
)
def test_an_unusable_connection_fails_naming_it(resolve, source, connection, expected):
    name = "AIRFLOW_CONN_FITLAKE_SOURCE" if source == "sql" else "AIRFLOW_CONN_FITLAKE_KAFKA"
    with pytest.raises(ConfigError, match="Airflow connection `fitlake_") as error:
        resolve(source, **{name: json.dumps(connection)})
    assert expected in str(error.value)


def test_unknown_mode_is_refused(resolve):
    with pytest.raises(ConfigError, match="FITLAKE_CONNECTIONS='always' is unknown"):
        resolve("sql", FITLAKE_CONNECTIONS="always")


# --- the mapping itself ---------------------------------------------------------------------------------


def odbc(allow_driver_in_extra=False, **fields):
    from airflow.sdk import Connection
    from fitlake_common.connections import source_from_connection

    return source_from_connection(Connection(conn_id="fitlake_source", **fields), allow_driver_in_extra)


def test_mssql_connection_type_maps_like_odbc():
    assert odbc(conn_type="mssql", host="sql1", port=1433, schema="fitlake", login="u", password="p") == {
        "FITLAKE_SOURCE_ODBC": "Driver={ODBC Driver 18 for SQL Server};Server=sql1,1433;Database=fitlake;Uid=u;",
        "FITLAKE_SOURCE_PASSWORD": "p",
    }


def test_driver_from_extra_when_airflow_allows_it_and_port_as_its_own_attribute():
    mapped = odbc(
        True, conn_type="odbc", host="127.0.0.1", port=5432, schema="postgres", extra='{"Driver": "PostgreSQL Unicode"}'
    )
    assert mapped["FITLAKE_SOURCE_ODBC"] == "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=postgres;"
    assert mapped["FITLAKE_SOURCE_PASSWORD"] == ""


def test_odbc_values_are_braced_and_a_password_in_the_extra_stays_out_of_the_string():
    mapped = odbc(
        conn_type="odbc",
        host="db",
        login="a;b",
        extra=json.dumps({"PWD": "x}y", "Application Name": " fitlake", "connect_kwargs": {"timeout": 3}}),
    )
    assert (
        mapped["FITLAKE_SOURCE_ODBC"]
        == "Driver={ODBC Driver 18 for SQL Server};Server=db;Uid={a;b};Application Name={ fitlake};"
    )
    assert mapped["FITLAKE_SOURCE_PASSWORD"] == "x}y"


# --- a real scheduler, connection-only configuration --------------------------------------------------


def run_dag(api, dag_id: str, timeout: float = 240) -> dict:
    """Unpause and trigger `dag_id`, wait until the run ends; the run with its task instances by task id."""
    api.unpause(dag_id)
    run = api.wait_for_run(dag_id, api.trigger(dag_id), timeout=timeout)
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances"
    run["tasks"] = {t["task_id"]: t for t in api.json("GET", path)["task_instances"]}
    return run


def _password_protected_postgres(superuser_odbc: str) -> int:
    """Add a login role that must authenticate with its password (SCRAM) over TCP; returns the port."""
    import pyodbc

    with pyodbc.connect(superuser_odbc, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{SOURCE_PASSWORD}'")
        cursor.execute(f"GRANT USAGE ON SCHEMA dbo TO {READER}")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA dbo TO {READER}")
        hba_file = Path(cursor.execute("SHOW hba_file").fetchone()[0])
        port = int(cursor.execute("SHOW port").fetchone()[0])
        # The throwaway cluster trusts everyone; this role is checked first and must give its password.
        hba_file.write_text(f"host all {READER} 127.0.0.1/32 scram-sha-256\n" + hba_file.read_text())
        cursor.execute("SELECT pg_reload_conf()")
    return port


def _reader_odbc(port: int, password: str) -> str:
    return f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={port};Database=postgres;Uid={READER};Pwd={password};"


@pytest.fixture(scope="module")
def connection_only(tmp_path_factory, dbt_manifest):
    """Sources loaded with the recorded data set; Airflow configured through connections only."""
    from ingestion.config import load_settings
    from ingestion.replay import replay
    from ingestion.stack import start_broker, stop_process
    from launchers.airflow_api import AirflowApi
    from launchers.airflow_env import airflow_env, free_port, prepare_home
    from launchers.standalone import Standalone
    from tests.support.postgres import throwaway_postgres

    root = tmp_path_factory.mktemp("connections")
    broker = start_broker(root / "broker")  # outside the data root: no stack state file points at it
    try:
        with throwaway_postgres() as superuser_odbc:
            loader = load_settings(
                {
                    "FITLAKE_DATA_ROOT": str(root / "loader"),
                    "FITLAKE_SOURCE_ODBC": superuser_odbc,
                    "FITLAKE_KAFKA_BOOTSTRAP": broker.bootstrap,
                }
            )
            loaded = replay(loader, [REPO_ROOT / "tests" / "data" / "replay"])
            port = _password_protected_postgres(superuser_odbc)
            env = airflow_env(
                root / "airflow",
                data_root=root / "data",
                port=free_port(),
                isolated_ports=True,
                extra={
                    "FITLAKE_DBT_MANIFEST": str(dbt_manifest),
                    "FITLAKE_SQL_SCHEDULE": "none",
                    "FITLAKE_KAFKA_SCHEDULE": "none",
                    # one retry, soon: a configuration error must fail at once all the same
                    "FITLAKE_LANDING_RETRIES": "1",
                    "FITLAKE_LANDING_RETRY_DELAY_SECONDS": "1",
                    "FITLAKE_CONNECTIONS": "required",
                    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",  # as the other test installations
                    "AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA": "True",
                    "AIRFLOW_CONN_FITLAKE_SOURCE": conn_json(
                        conn_type="odbc",
                        host="127.0.0.1",
                        port=port,
                        schema="postgres",
                        login=READER,
                        password=SOURCE_PASSWORD,
                        extra={"driver": "PostgreSQL Unicode", "BoolsAsChar": "0"},
                    ),
                },
            )
            for name in [n for n in env if n.startswith(("FITLAKE_SOURCE_", "FITLAKE_KAFKA_"))]:
                if name != SCHEDULE_ONLY:
                    del env[name]
            login = prepare_home(env)
            server = Standalone(env, log_path=root / "airflow" / "logs" / "standalone.log").start(timeout=240)
            try:
                api = AirflowApi(server.url)
                api.login(login.username, login.password)
                yield {"env": env, "api": api, "broker": broker, "port": port, "loaded": loaded, "root": root}
            finally:
                server.stop()
    finally:
        stop_process(broker.pid)


def test_the_configuration_holds_no_source_or_kafka_variables(connection_only):
    env = connection_only["env"]
    assert [n for n in env if n.startswith(("FITLAKE_SOURCE_", "FITLAKE_KAFKA_"))] == [SCHEDULE_ONLY]
    assert "AIRFLOW_CONN_FITLAKE_KAFKA" not in env


def test_the_source_role_really_needs_its_password(connection_only):
    import pyodbc

    port = connection_only["port"]
    with pytest.raises(pyodbc.Error, match="password authentication failed"):
        pyodbc.connect(_reader_odbc(port, "not-the-password"), timeout=10)
    with pyodbc.connect(_reader_odbc(port, SOURCE_PASSWORD), timeout=10) as conn:
        assert conn.cursor().execute("SELECT count(*) FROM dbo.registered_users").fetchone()[0] == 3


@pytest.fixture(scope="module")
def runs(connection_only):
    """land_kafka without its connection, then with it (added over the REST API); land_azure_sql."""
    api = connection_only["api"]
    api.wait_for_dags("land_kafka", "land_azure_sql")
    missing = run_dag(api, "land_kafka")
    extra = {"bootstrap.servers": connection_only["broker"].bootstrap, "client.id": "fitlake-connection-test"}
    api.json(
        "POST",
        "/api/v2/connections",
        {"connection_id": "fitlake_kafka", "conn_type": "kafka", "extra": json.dumps(extra)},
    )
    return {"kafka_missing": missing, "kafka": run_dag(api, "land_kafka"), "sql": run_dag(api, "land_azure_sql")}


def task_log(connection_only, run: dict, task_id: str) -> str:
    logs = connection_only["env"]["AIRFLOW_HOME"] + "/logs"
    files = sorted(
        Path(logs).glob(f"dag_id={run['dag_id']}/run_id={run['dag_run_id']}/task_id={task_id}/attempt=*.log")
    )
    assert files, f"no log file for {run['dag_id']}.{task_id} under {logs}"
    return "\n".join(f.read_text(errors="replace") for f in files)


def test_a_missing_connection_fails_the_task_at_once_naming_it(connection_only, runs):
    run = runs["kafka_missing"]
    assert run["state"] == "failed"
    for topic in ("user_info", "workout", "bpm"):
        task = run["tasks"][f"land_{topic}"]
        assert (task["state"], task["try_number"]) == ("failed", 1), "a configuration error is not retried"
        log = task_log(connection_only, run, f"land_{topic}")
        assert "Airflow connection `fitlake_kafka` not found, and FITLAKE_CONNECTIONS=required" in log


def test_connection_only_configuration_lands_both_sources(connection_only, runs):
    import pyodbc

    from tests.support.landing import kafka_rows, sql_rows

    landing = connection_only["root"] / "data" / "landing"
    loaded = connection_only["loaded"]
    for source in ("kafka", "sql"):
        run = runs[source]
        assert run["state"] == "success", {t: i["state"] for t, i in run["tasks"].items()}
        assert {i["state"] for i in run["tasks"].values()} == {"success"}
    assert {t: len(kafka_rows(landing, t)) for t in loaded.messages} == loaded.messages
    assert set(loaded.messages) == {"user_info", "workout", "bpm"}
    with pyodbc.connect(_reader_odbc(connection_only["port"], SOURCE_PASSWORD), timeout=10) as conn:
        for table in ("registered_users", "gym_logins"):
            in_source = conn.cursor().execute(f"SELECT count(*) FROM dbo.{table}").fetchone()[0]
            assert in_source > 0 and len(sql_rows(landing, table)) == in_source, table
    assert "sql credentials: Airflow connection `fitlake_source` (odbc)" in task_log(
        connection_only, runs["sql"], "land_registered_users"
    )
    assert "kafka credentials: Airflow connection `fitlake_kafka` (kafka)" in task_log(
        connection_only, runs["kafka"], "land_bpm"
    )


def test_the_password_never_appears_in_any_log(connection_only, runs):
    logs = Path(connection_only["env"]["AIRFLOW_HOME"]) / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    task_logs = [p for p in files if "task_id=land_" in str(p)]
    assert len(task_logs) >= 8, "the landing runs' task logs were not found"
    leaked = [str(p) for p in files if SOURCE_PASSWORD in p.read_text(errors="replace")]
    assert not leaked, f"the source password is in {leaked}"
