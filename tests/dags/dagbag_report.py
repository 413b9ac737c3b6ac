"""Load the DAG folder the way the DAG processor does and write what parsing did as JSON to the
file named by the second argument.

Run in a fresh interpreter (tests/dags/test_dag_integrity.py) so Airflow reads the test's AIRFLOW_HOME.
Every subprocess started and every in-process dbt invocation during parsing is recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

started_commands: list[list[str]] = []
_original_init = subprocess.Popen.__init__


def _recording_init(self, args, *rest, **kwargs):
    started_commands.append([str(a) for a in args] if not isinstance(args, (str, bytes)) else [str(args)])
    _original_init(self, args, *rest, **kwargs)


subprocess.Popen.__init__ = _recording_init

import dbt.cli.main  # noqa: E402

dbt_runner_calls: list = []
_original_invoke = dbt.cli.main.dbtRunner.invoke


def _recording_invoke(self, args, **kwargs):
    dbt_runner_calls.append(list(args))
    return _original_invoke(self, args, **kwargs)


dbt.cli.main.dbtRunner.invoke = _recording_invoke

from airflow.dag_processing.dagbag import DagBag  # noqa: E402

started_commands.clear()  # only what DAG parsing starts counts
t0 = time.monotonic()
bag = DagBag(sys.argv[1])
seconds = time.monotonic() - t0

from cosmos.constants import LoadMode, TestBehavior  # noqa: E402
from fitlake_common import cosmos_config  # noqa: E402

report = {
    "seconds": seconds,
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "subprocesses": started_commands,
    "dbt_runner_calls": dbt_runner_calls,
    "cosmos_load_method": cosmos_config.RENDER_CONFIG.load_method.name,
    "cosmos_test_behavior": cosmos_config.RENDER_CONFIG.test_behavior.name,
    "manifest_is_manifest": cosmos_config.RENDER_CONFIG.load_method == LoadMode.DBT_MANIFEST
    and cosmos_config.RENDER_CONFIG.test_behavior == TestBehavior.AFTER_EACH,
    "dags": {},
}


def _callables(value) -> list[str]:
    return [
        f"{c.__module__}.{c.__qualname__}" for c in (value if isinstance(value, list) else [value] if value else [])
    ]


for dag_id, dag in bag.dags.items():
    report["dags"][dag_id] = {
        "on_failure_callback": _callables(dag.on_failure_callback),
        "fileloc": dag.fileloc,
        "tags": sorted(dag.tags),
        "owner": dag.owner,
        "doc_md": dag.doc_md or "",
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "schedule": repr(dag.timetable),
        "params": {k: dag.params.get_param(k).dump() for k in dag.params},
        "tasks": {
            t.task_id: {
                "operator": type(t).__name__,
                "pool": t.pool,
                "retries": t.retries,
                "retry_exponential_backoff": bool(t.retry_exponential_backoff),
                "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule)),
                "upstream": sorted(t.upstream_task_ids),
                "outlets": [getattr(o, "uri", str(o)) for o in t.outlets],
                "watched": getattr(t, "watched", []),
                "start_from_trigger": bool(getattr(t, "start_from_trigger", False)),
            }
            for t in dag.tasks
        },
    }
with open(sys.argv[2], "w") as out:
    json.dump(report, out, default=str)
