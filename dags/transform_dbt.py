"""Build the dbt project (bronze -> silver -> gold, on DuckDB or Spark) once per run, whenever new data has landed."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task
from fitlake_common import alerts, config, dbt_build, dbt_docs
from fitlake_common.assets import ANY_LANDING_ASSET, WAREHOUSE_GOLD_ASSET
from fitlake_common.dbt_watchers import PRODUCER_TASK_ID, DbtNodeWatcher, parsing_for_task

DOC = """
### Transform with dbt (bronze -> silver -> gold, on DuckDB or Spark)
Runs when a landing Asset gets an event (or by hand). **`dbt_build`** runs one `dbt build` of the
whole project in its own process; the task group **`dbt`** (rendered by Cosmos from
`dbt_project/target/manifest.json`) has a task per model (`<model>.run`) and per model's tests
(`<model>.test`), plus one per multi-parent test: each shows what the build did to those nodes,
as dbt reports them. They run in the triggerer, never on a worker, and never start dbt.
**`docs_generate`** shows whether the dbt docs were regenerated (only when models, columns or
docs changed) or were current (menu **Browse > dbt docs**, login required).

* **One cycle, one build**: `dbt_build` first waits (up to `$FITLAKE_TRANSFORM_COALESCE_SECONDS`,
  60 s) while a landing DAG run is in flight, so landing both sources gives one build. When nothing
  has landed since the last successful build, and neither the project nor the as-of date changed,
  `dbt_build` is *skipped* with that reason, and so is everything else: a run in seconds.
* **On failure**: a failing error-level test turns its model's `test` task red (its log lists the
  test and dbt's message); every model downstream of that model is *skipped* ("not rebuilt:
  upstream failed: ..."), so gold is never rebuilt from silver that failed its tests; unrelated
  branches build. `dbt_build` fails with the list of failures, and the run fails.
* **On retry**: clear `dbt_build` (with its downstream tasks, the default): the watchers restart
  with it and follow the new build. There is no other way dbt starts. A killed build (SIGKILL,
  lost worker) fails `dbt_build` and the watchers of every node it had not finished; each model
  keeps its last commit (DuckDB, Delta), so the next run resumes. A full refresh that did not
  finish (killed, lost, or failed) is repeated by the next run, whatever it asked for, and its log
  says so: the refresh gave bronze new load times, which the models it did not reach would read again.
* **Engine** (`$FITLAKE_DBT_TARGET`, the dbt target: `duckdb` by default, or `spark`):
  * *DuckDB* admits one process per file: `dbt_build` holds the one-slot pool `duckdb_warehouse`,
    so no other task opens the warehouse while it builds, and its queue (`$FITLAKE_DBT_QUEUE`,
    `dbt`) must be served by the one worker that has the warehouse file.
  * *Spark* with `$FITLAKE_SPARK_METHOD=thrift` (a shared Spark Thrift server): dbt is only a client,
    the SQL runs on the Spark cluster, and readers see a consistent Delta snapshot while the build
    writes. No pool: readers and other tasks run beside the build, and any worker of the `dbt`
    queue can run it. With `session` (Spark inside the task, a local Derby metastore: one JVM at a
    time) the pool stays.
  * Either way one build at a time (`max_active_runs=1`): two builds of the same incremental
    models would race their merges and watermarks, whatever the engine.
* **as_of_date**: the Param, else the logical date (asset-triggered runs: when the run was queued).
* **full_refresh** rebuilds incremental models (with **select**: the models below them too);
  **select** is a dbt selector (`gym_summary`, `tag:silver`): the models it matches *and their
  upstream models* build (an incremental model must never run ahead of its parents, or it would skip
  rows they write later); the others are skipped.
"""
DOC += (
    f"\n**This deployment**: dbt target `{config.DBT_TARGET}` ({config.DBT_ENGINE}"
    f"{', ' + config.SPARK_METHOD if config.DBT_ENGINE == 'spark' else ''}); `dbt_build` in the pool "
    f"`{config.DBT_BUILD_POOL or 'default_pool'}`, on the queue `{config.DBT_QUEUE}`.\n"
)

with DAG(
    dag_id="transform_dbt",
    schedule=ANY_LANDING_ASSET,
    catchup=False,
    max_active_runs=1,
    tags=["fitlake", "dbt", "transform"],
    doc_md=DOC,
    params={
        "full_refresh": Param(False, type="boolean", description="Rebuild incremental models from scratch"),
        "select": Param(
            None,
            type=["null", "string"],
            description="dbt selector, e.g. gym_summary or tag:silver (its upstream models build too); empty: all",
        ),
        "as_of_date": Param(None, type=["null", "string"], format="date", description="Default: the logical date"),
    },
    default_args={"owner": config.OWNER, "retries": 0},
    on_failure_callback=alerts.on_dag_run_failure,
):

    @task(
        task_id=PRODUCER_TASK_ID,
        pool=config.DBT_BUILD_POOL,  # None (the default pool) when the warehouse admits many processes
        queue=config.DBT_QUEUE,
        priority_weight=100,
        outlets=[WAREHOUSE_GOLD_ASSET],
    )
    def build(params: dict, ti=None, dag_run=None, outlet_events=None) -> dict:
        return dbt_build.run_build_task(params, ti, dag_run, outlet_events)

    build()
    # A worker that loads this file to run `dbt_build` needs only that task: importing Cosmos and
    # rendering the watchers would add a second or two to every run's start.
    if not parsing_for_task(PRODUCER_TASK_ID):
        from cosmos import DbtTaskGroup
        from fitlake_common import cosmos_config

        dbt = DbtTaskGroup(
            group_id="dbt",
            project_config=cosmos_config.PROJECT_CONFIG,
            profile_config=cosmos_config.PROFILE_CONFIG,
            execution_config=cosmos_config.EXECUTION_CONFIG,
            render_config=cosmos_config.RENDER_CONFIG,
        )
        cosmos_config.link_detached_tests(dbt)
        cosmos_config.leaf_tasks(dbt) >> DbtNodeWatcher(
            task_id="docs_generate", watched=[dbt_docs.DOCS_NODE], label="dbt docs"
        )
