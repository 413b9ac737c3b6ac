"""Land Kafka micro-batches (user_info, workout, bpm) into the Parquet landing zone."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task
from fitlake_common import alerts, config
from fitlake_common.assets import KAFKA_ASSETS, KAFKA_TOPICS
from fitlake_common.landing import ALL, land

DOC = """
### Land Kafka (`user_info`, `workout`, `bpm`)
Each task reads one topic from the offsets already landed up to the end offsets seen at start
(`ingestion.land_kafka`), writes Parquet per partition under `$FITLAKE_LANDING_ROOT/kafka/<topic>/`
with topic, partition, offset, broker timestamp, raw key and value, then commits the offsets.
A task that landed messages publishes `fitlake://landing/kafka/<topic>`, which schedules
**transform_dbt**; a task with nothing new is *skipped*.

* Credentials: the Airflow connection `fitlake_kafka` (Kafka type, librdkafka settings in its extra),
  else `$FITLAKE_KAFKA_BOOTSTRAP` / `$FITLAKE_KAFKA_OPT_*`; with `FITLAKE_CONNECTIONS=required` the
  connection must exist.
* Schedule: `$FITLAKE_KAFKA_SCHEDULE` (default every 5 minutes, down to every minute). Manual runs: pick a topic.
* Retries with exponential backoff (broker restarts). Landing is exactly-once, so a retry never duplicates.
* Logs: rows, files, MB, seconds and the offset range landed per partition.
"""

with DAG(
    dag_id="land_kafka",
    schedule=config.KAFKA_SCHEDULE,
    catchup=False,
    max_active_runs=1,
    tags=["fitlake", "landing", "kafka"],
    doc_md=DOC,
    params={"topic": Param(ALL, enum=[ALL, *KAFKA_TOPICS], description="Which topic to land")},
    default_args=config.LANDING_DEFAULT_ARGS,
    on_failure_callback=alerts.on_dag_run_failure,
):

    @task
    def land_topic(topic: str, **context) -> dict:
        return land("kafka", topic, context)

    for topic, asset in KAFKA_ASSETS.items():
        land_topic.override(task_id=f"land_{topic}", outlets=[asset])(topic)
