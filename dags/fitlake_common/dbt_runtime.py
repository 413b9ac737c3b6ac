"""Run-time decisions of the transformation DAG that need neither dbt nor Airflow: the as-of date and a
selection's closures (upstream for every run, downstream too for a full refresh).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path


def resolve_as_of_date(override: str | None, dag_run) -> str:
    """The Param when given (YYYY-MM-DD), else the run's logical date, else (asset-triggered runs) run_after."""
    if override:
        return date.fromisoformat(str(override).strip()).isoformat()
    moment = getattr(dag_run, "logical_date", None) or dag_run.run_after
    return moment.date().isoformat()


def _closure(names: list[str], manifest_path: Path, edges: str) -> list[str]:
    """`names` and every model reachable from them through the manifest's `parent_map` or `child_map`."""
    manifest = json.loads(Path(manifest_path).read_text())
    links, nodes, wanted = manifest[edges], manifest["nodes"], set(names)
    ids = {uid for uid, node in nodes.items() if node["resource_type"] == "model" and node["name"] in wanted}
    todo = list(ids)
    while todo:
        for linked in links.get(todo.pop(), []):
            if linked.startswith("model.") and linked not in ids:
                ids.add(linked)
                todo.append(linked)
    return sorted(nodes[uid]["name"] for uid in ids)


def with_upstream_models(names: list[str], manifest_path: Path) -> list[str]:
    """`names` and every model upstream of them, from the manifest's parent map.

    The incremental models read what their parents wrote since their own last run (by bronze
    `load_time`). A model that ran while a parent was left out would move that mark past rows the
    parent has yet to write, and skip them for good; so a selection always builds its ancestors
    too (incremental ones with nothing new cost only their fixed time).
    """
    return _closure(names, manifest_path, "parent_map")


def with_downstream_models(names: list[str], manifest_path: Path) -> list[str]:
    """`names` and every model downstream of them: what a full refresh of `names` must rebuild too.

    A full refresh gives bronze rows new load times; an incremental model below a refreshed one that is
    not refreshed with it would read those rows again (and the append-only ones would hold them twice).
    """
    return _closure(names, manifest_path, "child_map")
