"""Run-time pieces of the transformation DAG: the run plan, the selector gate and `dbt docs generate`.

The Cosmos task graph is fixed at parse time (from the manifest). A run's Params act at run time:
`plan` resolves the as-of date and, when a selector is given, asks dbt which models it matches
(`dbt ls` here is run time, never parse time), then marks the tasks of the other models skipped,
so they are never started. (An Airflow branch would not do: it refuses to skip tasks downstream of
a followed one.) Cosmos tasks use the trigger rule `none_failed`, so a selected model downstream
of a *skipped* one still runs, while a model downstream of a *failed* run or test is `upstream_failed`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from fitlake_common import config

log = logging.getLogger(__name__)

PLAN_TASK_ID = "plan"


def resolve_as_of_date(override: str | None, dag_run) -> str:
    """The Param when given (YYYY-MM-DD), else the run's logical date, else (asset-triggered runs) run_after."""
    if override:
        return date.fromisoformat(str(override).strip()).isoformat()
    moment = getattr(dag_run, "logical_date", None) or dag_run.run_after
    return moment.date().isoformat()


def _dbt(args: list[str], target_path: Path):
    """Invoke dbt in this process (dbtRunner), like the Cosmos tasks do.

    In-process matters: dbt-duckdb keeps the warehouse open until the process exits, so under
    `airflow dags test` (every task in one process) a dbt *subprocess* would find the file locked.
    """
    from dbt.cli.main import dbtRunner

    os.environ.update(config.DBT_ENV)
    command = [
        *args,
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROFILES_DIR),
        "--target-path",
        str(target_path),
    ]
    log.info("dbt %s", " ".join(command))
    result = dbtRunner().invoke(command)
    if not result.success:
        raise RuntimeError(f"dbt {args[0]} failed: {result.exception or 'see the log above'}")
    return result


def select_models(selector: str) -> list[str]:
    """Names of the models a dbt selector matches (`dbt ls`, against a scratch target dir)."""
    with tempfile.TemporaryDirectory(prefix="fitlake-ls-") as scratch:
        partial = config.DBT_MANIFEST.parent / "partial_parse.msgpack"
        if partial.exists():  # reuse the parse `make dbt-manifest` did: seconds instead of a full parse
            shutil.copy(partial, Path(scratch) / partial.name)
        try:
            result = _dbt(
                ["ls", "--quiet", "--resource-type", "model", "--output", "name", "--select", selector], Path(scratch)
            )
        except RuntimeError as exc:
            raise ValueError(f"dbt could not resolve the selector {selector!r}: {exc}") from None
    names = sorted({str(name).strip() for name in result.result or [] if str(name).strip()})
    if not names:
        raise ValueError(f"the selector {selector!r} matches no model; nothing would run")
    return names


def with_upstream_models(names: list[str], manifest_path: Path) -> list[str]:
    """`names` and every model upstream of them, from the manifest's parent map.

    The incremental models read what their parents wrote since their own last run (by bronze
    `load_time`). A model that ran while a parent was left out would move that mark past rows the
    parent has yet to write, and skip them for good; so a selection always builds its ancestors
    too (incremental ones with nothing new cost only their fixed time).
    """
    manifest = json.loads(manifest_path.read_text())
    parents, nodes, wanted = manifest["parent_map"], manifest["nodes"], set(names)
    ids = {uid for uid, node in nodes.items() if node["resource_type"] == "model" and node["name"] in wanted}
    todo = list(ids)
    while todo:
        for parent in parents.get(todo.pop(), []):
            if parent.startswith("model.") and parent not in ids:
                ids.add(parent)
                todo.append(parent)
    return sorted(nodes[uid]["name"] for uid in ids)


def plan(params: dict, dag_run) -> dict:
    """What this run does: as-of date, full refresh, the selected models (None: all)."""
    config.WAREHOUSE.parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its directory
    as_of_date = resolve_as_of_date(params.get("as_of_date"), dag_run)
    selector = (params.get("select") or "").strip()
    matched = select_models(selector) if selector else None
    selected = with_upstream_models(matched, config.DBT_MANIFEST) if matched else None
    if selected is not None and len(selected) > len(matched):
        log.info(
            "the selector matches %s; their upstream models run too: %s",
            ", ".join(matched),
            ", ".join(sorted(set(selected) - set(matched))),
        )
    result = {
        "as_of_date": as_of_date,
        "full_refresh": bool(params.get("full_refresh")),
        "select": selector or None,
        "models": selected,
    }
    log.info("plan: as_of_date=%s full_refresh=%s select=%s", as_of_date, result["full_refresh"], selector or "(all)")
    if selected is not None:
        log.info("selected models (%d): %s", len(selected), ", ".join(sorted(selected)))
    return result


def run_plan_task(params: dict, dag_run, ti, dag) -> dict:
    """Body of the `plan` task: push the plan (XCom key `plan`), skip the tasks of unselected models."""
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    run_plan = plan(params, dag_run)
    ti.xcom_push(key="plan", value=run_plan)
    skip = tasks_to_skip(run_plan, dag.tasks)
    if skip:
        log.info("skipping %d task(s) of unselected models", len(skip))
        raise DownstreamTasksSkipped(tasks=[(task_id, -1) for task_id in skip])
    return run_plan


def tasks_to_skip(run_plan: dict, tasks) -> list[str]:
    """The dbt tasks a selector leaves out (none without a selector).

    A detached multi-parent test runs only when all its parent models are selected (dbt's
    "cautious" indirect selection): otherwise one of its tables may not exist yet.
    """
    if run_plan["models"] is None:
        return []
    selected = set(run_plan["models"])
    skip = []
    for task in tasks:
        if not task.task_id.startswith("dbt."):
            continue
        models = models_of_task(task)
        keep = models <= selected if is_detached_test(task.task_id) else bool(models & selected)
        if not keep:
            skip.append(task.task_id)
    return sorted(skip)


def is_detached_test(task_id: str) -> bool:
    """`dbt.relationships_..._test`: a test Cosmos renders on its own, after all of its parents."""
    return task_id.count(".") == 1 and task_id.endswith("_test")


def model_of_task(task_id: str) -> str:
    """`dbt.users.run` -> `users` (Cosmos names each model's group after the model)."""
    parts = task_id.split(".")
    return parts[-2] if len(parts) >= 2 else parts[-1]


def models_of_task(task) -> set[str]:
    """The model a Cosmos task builds or tests; for a detached multi-parent test, its parent models."""
    if is_detached_test(task.task_id):
        return {model_of_task(upstream) for upstream in task.upstream_task_ids}
    return {model_of_task(task.task_id)}


def docs_generate() -> str:
    """`dbt docs generate` into FITLAKE_DBT_DOCS_DIR: index.html, manifest.json, catalog.json."""
    started = time.monotonic()
    docs_dir = config.DBT_DOCS_DIR
    docs_dir.mkdir(parents=True, exist_ok=True)
    partial = config.DBT_MANIFEST.parent / "partial_parse.msgpack"
    if partial.exists() and not (docs_dir / partial.name).exists():
        shutil.copy(partial, docs_dir / partial.name)
    _dbt(["docs", "generate"], docs_dir)
    catalog = json.loads((docs_dir / "catalog.json").read_text())
    log.info(
        "dbt docs: %d relations documented in %s (%.1fs); browse them from the Airflow menu 'dbt docs'",
        len(catalog.get("nodes", {})),
        docs_dir,
        time.monotonic() - started,
    )
    return str(docs_dir)
