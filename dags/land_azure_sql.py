"""Land the Azure SQL tables into the Parquet landing zone, incrementally, on a schedule."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task
from fitlake_common import alerts, config
from fitlake_common.assets import SQL_ASSETS, SQL_TABLES
from fitlake_common.landing import ALL, land

DOC = """
### Land Azure SQL (`dbo.registered_users`, `dbo.gym_logins`)
Each task extracts one table incrementally by its `modified_at` watermark with an overlap window
(`ingestion.land_sql`) and writes immutable Parquet under `$FITLAKE_LANDING_ROOT/sql/<table>/`.
A task that landed rows publishes the Asset `fitlake://landing/sql/<table>`, which schedules
**transform_dbt**; a task with nothing new is *skipped* (no Asset event).

* Credentials: the Airflow connection `fitlake_source` (ODBC or MSSQL type; from the secrets backend,
  `AIRFLOW_CONN_FITLAKE_SOURCE` or Admin > Connections), else `$FITLAKE_SOURCE_ODBC` /
  `$FITLAKE_SOURCE_PASSWORD`; with `FITLAKE_CONNECTIONS=required` the connection must exist.
* Schedule: `$FITLAKE_SQL_SCHEDULE` (default hourly; `none` for manual only). Manual runs: pick a table.
* Retries with exponential backoff (source failover, network). Reruns are safe: landing is exactly-once.
* Logs: rows, files, MB, seconds and the new watermark per table.
"""

with DAG(
    dag_id="land_azure_sql",
    schedule=config.SQL_SCHEDULE,
    catchup=False,
    max_active_runs=1,  # runs of the same table never overlap (the lander also holds a lock per table)
    tags=["fitlake", "landing", "azure-sql"],
    doc_md=DOC,
    params={"table": Param(ALL, enum=[ALL, *SQL_TABLES], description="Which table to land")},
    default_args=config.LANDING_DEFAULT_ARGS,
    on_failure_callback=alerts.on_dag_run_failure,
):

    @task
    def land_table(table: str, **context) -> dict:
        return land("sql", table, context)

    for table, asset in SQL_ASSETS.items():
        land_table.override(task_id=f"land_{table}", outlets=[asset])(table)
