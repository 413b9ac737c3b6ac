"""Build the dbt project (bronze -> silver -> gold) with Cosmos whenever new data has landed."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task
from cosmos import DbtTaskGroup
from fitlake_common import config, cosmos_config, dbt_runtime
from fitlake_common.assets import ANY_LANDING_ASSET

DOC = """
### Transform with dbt (bronze -> silver -> gold on DuckDB)
Runs when any landing Asset gets an event (or by hand). The dbt project is rendered by Cosmos from
`dbt_project/target/manifest.json` (built by `make dbt-manifest`): one task group per model, its
`run` then its `test`. A failing error-level test fails that group and every model downstream is
`upstream_failed` (gold is never rebuilt from silver that failed its tests); unrelated branches go on.
Finally `dbt docs generate` refreshes the docs (menu **Browse > dbt docs**, login required).

* **as_of_date**: the Param, else the logical date (asset-triggered runs: when the run was queued).
* **full_refresh** rebuilds incremental models; **select** is a dbt selector (`gym_summary`,
  `tag:silver`): the models it matches *and their upstream models* run (an incremental model must
  never run ahead of its parents, or it would skip rows they write later), the others are skipped.
* Concurrency: DuckDB lets one process open the file read-write and refuses every other one, even
  readers. Every task that opens the warehouse runs in the one-slot pool `duckdb_warehouse`, and
  `max_active_runs=1` keeps a second run from interleaving its models with this run's.
"""

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
            "", type="string", description="dbt selector (its upstream models run too); empty builds everything"
        ),
        "as_of_date": Param(None, type=["null", "string"], format="date", description="Default: logical date"),
    },
    default_args={"owner": config.OWNER, "retries": 0},
):

    @task(task_id=dbt_runtime.PLAN_TASK_ID)
    def plan(params: dict, dag_run=None, ti=None, dag=None) -> dict:
        return dbt_runtime.run_plan_task(params, dag_run, ti, dag)

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=cosmos_config.PROJECT_CONFIG,
        profile_config=cosmos_config.PROFILE_CONFIG,
        execution_config=cosmos_config.EXECUTION_CONFIG,
        render_config=cosmos_config.RENDER_CONFIG,
        operator_args=cosmos_config.OPERATOR_ARGS,  # pool, trigger rule, the plan's full_refresh and as_of_date
    )

    cosmos_config.gate_detached_tests(dbt)

    @task(pool=config.WAREHOUSE_POOL, trigger_rule="none_failed")
    def docs_generate() -> str:
        return dbt_runtime.docs_generate()

    plan() >> dbt >> docs_generate()
