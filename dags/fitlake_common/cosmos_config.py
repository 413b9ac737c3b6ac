"""How Cosmos renders the dbt project in transform_dbt: where the project, profile and manifest are,
and which task stands for each dbt node.

The project is rendered from a manifest built ahead of time (`make dbt-manifest` runs `dbt parse`),
so parsing a DAG never runs dbt: no `dbt ls`, no `dbt deps`, no subprocess at all.

Cosmos lays the graph out as usual (a task group per model: its run, then its tests; a task of its
own for each multi-parent test, after all its parents), but every node becomes a `DbtNodeWatcher`:
the dbt work itself is the one `dbt build` of the `dbt_build` task (see `dbt_build`, `dbt_watchers`).
"""

from __future__ import annotations

import json
from functools import lru_cache

from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import DbtResourceType, ExecutionMode, LoadMode, TestBehavior

from fitlake_common import config
from fitlake_common.dbt_watchers import DbtNodeWatcher

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

# No Cosmos task runs dbt (the converters below make every task a watcher); LOCAL is only the mode
# Cosmos lays the graph out for.
EXECUTION_CONFIG = ExecutionConfig(execution_mode=ExecutionMode.LOCAL, dbt_executable_path=config.DBT_EXECUTABLE)


@lru_cache(maxsize=1)
def _manifest_nodes() -> dict:
    return json.loads(config.DBT_MANIFEST.read_text())["nodes"]


@lru_cache(maxsize=1)
def _tests_by_model() -> dict[str, list[str]]:
    """Model unique id -> its single-parent tests (those Cosmos puts in the model's `test` task)."""
    tests: dict[str, list[str]] = {}
    for uid, node in _manifest_nodes().items():
        parents = node.get("depends_on", {}).get("nodes", [])
        if node["resource_type"] == "test" and len(parents) == 1:
            tests.setdefault(parents[0], []).append(uid)
    return {model: sorted(ids) for model, ids in tests.items()}


def _watch_model(dag, task_group, node, task_id, **_):
    return DbtNodeWatcher(
        task_id=task_id, dag=dag, task_group=task_group, watched=[node.unique_id], label=f"model {node.name}"
    )


def _watch_tests(dag, task_group, node, task_id, **_):
    if task_id == "test":  # the `test` task of a model's group: all the tests on that model alone
        watched, label = _tests_by_model().get(node.unique_id, []), f"tests of {node.name}"
    else:  # a multi-parent test, rendered after all its parents (Cosmos names it `<test name>_test`)
        # Cosmos 1.15 hands detached-test converters the last model it rendered as `node`, so the
        # test is found by the task id Cosmos gave it.
        uid = _tests_by_task_id().get(task_id)
        if uid is None:
            raise ValueError(f"transform_dbt: no dbt test in {config.DBT_MANIFEST} is rendered as task {task_id!r}")
        watched, label = [uid], f"test {_manifest_nodes()[uid]['name']}"
    return DbtNodeWatcher(task_id=task_id, dag=dag, task_group=task_group, watched=watched, label=label)


@lru_cache(maxsize=1)
def _tests_by_task_id() -> dict[str, str]:
    return {f"{n['name']}_test": uid for uid, n in _manifest_nodes().items() if n["resource_type"] == "test"}


RENDER_CONFIG = RenderConfig(
    load_method=LoadMode.DBT_MANIFEST,
    test_behavior=TestBehavior.AFTER_EACH,
    should_detach_multiple_parents_tests=True,
    # project hooks run inside the one build; checks only the monitor runs are not part of it
    exclude=["resource_type:operation", *config.DBT_BUILD_EXCLUDE],
    node_converters={DbtResourceType.MODEL: _watch_model, DbtResourceType.TEST: _watch_tests},
    node_conversion_by_task_group=False,  # Cosmos keeps the per-model group (run, then tests); we convert its tasks
    emit_datasets=False,
    enable_mock_profile=False,
)


def link_detached_tests(group) -> list[str]:
    """Draw each multi-parent test before the children of the model it tests, as the build gates them (`dbt_session`).

    Returns the ids of the detached test tasks. A child that is itself upstream of the test (the test
    reads it) is left alone, which keeps the graph acyclic. The edges are for the reader: the watchers
    start together (trigger rule `always`); the gating happens inside the build.
    """
    tasks = {task.task_id: task for task in _walk(group)}
    detached = [t for tid, t in tasks.items() if tid.count(".") == 1 and tid.endswith("_test")]
    nodes = _manifest_nodes()
    for test in detached:
        tested = nodes.get(test.watched[0], {}).get("attached_node") if test.watched else None
        if not tested or tested not in nodes:
            continue
        tested_group = f"{group.group_id}.{nodes[tested]['name']}"
        ancestors = test.get_flat_relative_ids(upstream=True)
        for parent_id in (f"{tested_group}.test", f"{tested_group}.run"):
            for child_id in tasks[parent_id].downstream_task_ids if parent_id in tasks else []:
                if (
                    child_id.endswith(".run")
                    and not child_id.startswith(tested_group + ".")
                    and child_id not in ancestors
                ):
                    test >> tasks[child_id]
    return [t.task_id for t in detached]


def leaf_tasks(group) -> list:
    return [task for task in _walk(group) if not task.downstream_task_ids]


def _walk(group):
    for child in group.children.values():
        if hasattr(child, "children"):
            yield from _walk(child)
        else:
            yield child
