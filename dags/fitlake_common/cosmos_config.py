"""The one place that tells Cosmos where the dbt project, its profile and its executable are.

The project is rendered from a manifest built ahead of time (`make dbt-manifest` runs `dbt parse`),
so parsing a DAG never runs dbt: no `dbt ls`, no `dbt deps`, no subprocess at all.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule
from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from fitlake_common import config

PROFILE_CONFIG = ProfileConfig(
    profile_name="fitlake",
    target_name=config.DBT_TARGET,
    profiles_yml_filepath=config.DBT_PROFILES_DIR / "profiles.yml",
)

PROJECT_CONFIG = ProjectConfig(
    dbt_project_path=config.DBT_PROJECT_DIR,
    manifest_path=config.DBT_MANIFEST,
    project_name="fitlake",
    env_vars=config.DBT_ENV,
)

# LOCAL: dbt runs on the worker, in the task's process (dbtRunner): no interpreter start-up per task.
EXECUTION_CONFIG = ExecutionConfig(
    execution_mode=ExecutionMode.LOCAL,
    invocation_mode=InvocationMode.DBT_RUNNER,
    dbt_executable_path=config.DBT_EXECUTABLE,
)

# One task group per model: `run` then its tests; a failing test stops exactly the models downstream.
# A test with several parents (relationships) cannot run right after one of them (the other may not
# exist yet), so Cosmos gives it its own task after all its parents; `gate_detached_tests` then makes
# the children of those parents wait for it, so it is a gate like the per-model tests.
RENDER_CONFIG = RenderConfig(
    load_method=LoadMode.DBT_MANIFEST,
    test_behavior=TestBehavior.AFTER_EACH,
    should_detach_multiple_parents_tests=True,
    emit_datasets=False,
    enable_mock_profile=False,
)

_RUN_PLAN = "ti.xcom_pull(task_ids='plan', key='plan')"  # pushed by the `plan` task (dbt_runtime.run_plan_task)

# Arguments of every Cosmos task of transform_dbt.
OPERATOR_ARGS = {
    "pool": config.WAREHOUSE_POOL,  # one task at a time opens the DuckDB file
    "trigger_rule": "none_failed",  # run after skipped (unselected) models, never after failed ones
    "full_refresh": "{{ " + _RUN_PLAN + "['full_refresh'] }}",
    "vars": {"as_of_date": "{{ " + _RUN_PLAN + "['as_of_date'] }}"},
    "install_deps": False,  # no packages; never reach the network from a task
}


def gate_detached_tests(group) -> list[str]:
    """Make every model downstream of a detached (multi-parent) test's parents wait for that test.

    Returns the ids of the detached test tasks. A child that is itself upstream of the test (one parent
    refs the other) is left alone, which keeps the graph acyclic. A detached test runs once its parents
    are done (`all_done`), even when one failed: the failed parent already stops its own children, and
    the test must not pass an `upstream_failed` on to the children of the *other*, healthy parent
    (a warn-level relationships test would otherwise block them).
    """
    tasks = {task.task_id: task for task in group.iter_tasks()} if hasattr(group, "iter_tasks") else {}
    if not tasks:
        tasks = {t.task_id: t for t in _walk(group)}
    detached = [t for tid, t in tasks.items() if tid.count(".") == 1 and tid.endswith("_test")]
    for test in detached:
        test.trigger_rule = TriggerRule.ALL_DONE
        ancestors = test.get_flat_relative_ids(upstream=True)
        for parent_id in list(test.upstream_task_ids):
            for child_id in tasks[parent_id].downstream_task_ids:
                if child_id.endswith(".run") and child_id not in ancestors and child_id in tasks:
                    test >> tasks[child_id]
    return [t.task_id for t in detached]


def _walk(group):
    for child in group.children.values():
        if hasattr(child, "children"):
            yield from _walk(child)
        else:
            yield child
