"""The one place that tells Cosmos where the dbt project, its profile and its executable are.

The project is rendered from a manifest built ahead of time (`make dbt-manifest` runs `dbt parse`),
so parsing a DAG never runs dbt: no `dbt ls`, no `dbt deps`, no subprocess at all.
"""

from __future__ import annotations

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
RENDER_CONFIG = RenderConfig(
    load_method=LoadMode.DBT_MANIFEST,
    test_behavior=TestBehavior.AFTER_EACH,
    emit_datasets=False,
    enable_mock_profile=False,
)
