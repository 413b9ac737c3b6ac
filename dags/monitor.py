"""Watch the pipeline: health checks into the health history, alerts, the snapshot and the dashboard."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task
from fitlake_common import alerts, config, monitor
from fitlake_common.assets import WAREHOUSE_GOLD_ASSET

DOC = """
### Monitor: health checks, alerts, dashboard
Runs every hour (`$FITLAKE_MONITOR_SCHEDULE`) and after every successful transform (the Asset
`fitlake://warehouse/gold`). Every result (check, entity, value, threshold, status, time) is
appended to the **health history** (`$FITLAKE_HEALTH_DIR/history/*.parquet`, outside the
warehouse: full refreshes never lose it).

| check | entity | fails when (default threshold) |
|---|---|---|
| `freshness` | each SQL table and Kafka topic | newest landed file older than 12 h (warn) / 24 h (error) |
| `volume` | each source entity and gold table | a day's rows off the trailing 7-day mean by > 10 % (warn) |
| `duplicates` | every bronze, silver and gold grain | any duplicated key (error) |
| `reconciliation` | each SQL table | a source row version behind the watermark never landed (error) |
| `kafka_lag` | each topic | messages not landed > 1,000,000 (warn); offsets expired unlanded (error) |
| `quarantine_rate` | each topic and SQL table | > 1 % of a run's records quarantined, at least 10 (warn) |

Tasks: `warehouse_checks` (dbt source freshness + `dbt build --select tag:health`, in the
`duckdb_warehouse` pool) and `source_checks` (reconciliation, Kafka lag: no warehouse) ->
`record` -> `alert` (SMTP / Slack notifiers from the connections `fitlake_smtp` / `fitlake_slack`;
none configured: no alert). A check that keeps failing alerts once, then every
`$FITLAKE_ALERT_REPEAT_HOURS` (24) or when it gets worse; every run records it. After a transform
(or with **refresh_snapshot**), `refresh_snapshot` exports gold to a Parquet snapshot (pool,
seconds) that the dashboard (**Browse > FitLake dashboard**) and the API (`/fitlake-api/v1/`)
read; otherwise it is *skipped*. `dashboard` regenerates the page every run.
A failing check does not fail the run (it is data: history, alert, dashboard); a check that cannot
run is recorded as a failing `dbt` check, and a crashed task fails the run and alerts.
"""

# hourly and after each transform; `none`: only after transforms (and manual runs)
CRON = os.environ.get("FITLAKE_MONITOR_SCHEDULE", "@hourly").strip()
if CRON.lower() in ("", "none", "off", "manual"):
    SCHEDULE = WAREHOUSE_GOLD_ASSET
else:
    SCHEDULE = AssetOrTimeSchedule(timetable=CronTriggerTimetable(CRON, timezone="UTC"), assets=WAREHOUSE_GOLD_ASSET)

with DAG(
    dag_id="monitor",
    schedule=SCHEDULE,
    catchup=False,
    max_active_runs=1,
    tags=["fitlake", "monitor", "health"],
    doc_md=DOC,
    params={
        "refresh_snapshot": Param(
            False,
            type="boolean",
            description="Export a new snapshot for the dashboard and API (default: after a transform)",
        )
    },
    default_args={
        "owner": config.OWNER,
        "retries": int(os.environ.get("FITLAKE_MONITOR_RETRIES", "1")),
        "retry_delay": timedelta(seconds=int(os.environ.get("FITLAKE_MONITOR_RETRY_DELAY_SECONDS", "60"))),
    },
    on_failure_callback=alerts.on_dag_run_failure,
):

    @task(pool=config.WAREHOUSE_POOL)
    def warehouse_checks() -> list[dict]:
        return monitor.warehouse_checks()

    @task
    def source_checks() -> list[dict]:
        return monitor.source_checks()

    @task
    def record(warehouse: list[dict], sources: list[dict], dag_run=None) -> dict:
        return monitor.record(warehouse + sources, dag_run.dag_id, dag_run.run_id)

    @task
    def alert(recorded: dict, dag_run=None, **context) -> list[str]:
        return monitor.alert(recorded, dag_run.dag_id, dag_run.run_id, context)

    @task(pool=config.WAREHOUSE_POOL)
    def refresh_snapshot(dag_run=None, params=None, triggering_asset_events=None) -> dict:
        return monitor.refresh_snapshot(params, triggering_asset_events, source=f"{dag_run.dag_id} {dag_run.run_id}")

    @task(trigger_rule="none_failed")
    def dashboard() -> str:
        return monitor.build_dashboard()

    checked = warehouse_checks()
    recorded = record(checked, source_checks())
    alert(recorded)
    # the snapshot waits for the checks only to take the pool after them, never to read their results
    snapshot = refresh_snapshot()
    checked >> snapshot
    [recorded, snapshot] >> dashboard()
