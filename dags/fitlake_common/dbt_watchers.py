"""Watcher tasks of transform_dbt: each shows, as its own Airflow state, what the run's one dbt build did.

The `dbt_build` task runs a single `dbt build` and publishes the status of every dbt node it reports
as one XCom (`STATUS_XCOM_KEY`) and the same payload in a file beside the warehouse, refreshed every
second while dbt runs. Each model has a watcher for its
run and one for its tests (the task group Cosmos renders from the manifest); each multi-parent test
and the docs have one too. A watcher waits until the nodes it watches are final and then ends with
the state they call for: success, failed (an error or an error-level test failure) or skipped (not
rebuilt: not selected, nothing new, or below a failure).

Why watchers of our own rather than Cosmos' WATCHER consumers (measured, see README "Orchestration"):
a Cosmos consumer starts on a worker (a task process each: ~2-3 s here, ~45 of them per run) and a
retried consumer runs dbt itself, a second writer on the DuckDB file. These start and end in the
triggerer (`start_from_trigger`, task-end events): no worker slot, no process, never dbt. All the
watchers of one run share one poll (`_RunStatusPoll`), which reads the status file and asks the API
server only a handful of times per run.

Watchers use the trigger rule `always`: they start with the run and wait inside the triggerer, so a
chain of models does not pay a scheduling round per level. Their edges follow dbt's lineage for the
reader; what gates the models is dbt itself, inside the one build (see `dbt_session.gated_by_tested_model`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException, AirflowSkipException
from airflow.triggers.base import (
    BaseTrigger,
    StartTriggerArgs,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)

from fitlake_common.dbt_status import FAILED_STATUSES

STATUS_XCOM_KEY = "dbt_node_status"
PRODUCER_TASK_ID = "dbt_build"
# How often the watchers of a run look at the producer's status (one look shared by all of them).
POLL_SECONDS = 1.0
# Between a watcher's last log line and its task-end event (see DbtNodeStatusTrigger.run).
LOG_HEAD_START_SECONDS = 0.5
# A watcher gives up when the producer has not reported for this long (the producer's own timeout
# is shorter, so this only fires when the triggerer lost track of a run).
WATCH_TIMEOUT = timedelta(hours=6)

# dbt's final node statuses, by what they mean for the watcher.
PASSED_STATUSES = {"success", "pass", "warn", "no-op"}
PRODUCER_FINAL_STATES = {"success", "failed", "upstream_failed", "skipped", "removed"}


@dataclass(frozen=True)
class Verdict:
    state: str  # "success" | "failed" | "skipped"
    message: str


def verdict(watched: list[str], label: str, payload: dict | None, producer_state: str | None) -> Verdict | None:
    """What a watcher of `watched` (dbt unique ids) ends as, or None while the build still runs.

    `payload` is the producer's status XCom; `producer_state` its task state. A node the build has
    not reported counts as pending until the build says it is done (`payload["done"]`) or the
    producer task ended without saying so (killed, crashed): then the watcher fails, pointing at it.
    """
    nodes = (payload or {}).get("nodes", {})
    done = bool((payload or {}).get("done"))
    skip_all = (payload or {}).get("skip_all")  # the build did not run at all, and says why
    default = {"status": "skipped", "message": skip_all} if skip_all else None
    statuses = {uid: nodes.get(uid, default) for uid in watched}
    missing = [uid for uid, status in statuses.items() if status is None]
    if missing and not done:
        if producer_state in PRODUCER_FINAL_STATES:
            return Verdict(
                "failed",
                f"{label}: the {PRODUCER_TASK_ID} task ended ({producer_state}) before dbt reported "
                f"{', '.join(_short(uid) for uid in missing)}; its log says why. Clear that task to rerun the build.",
            )
        return None
    if not watched:
        return Verdict("skipped", f"{label}: nothing to watch")

    lines = [_describe(uid, status) for uid, status in statuses.items()]
    failed = [uid for uid, status in statuses.items() if status and status["status"] in FAILED_STATUSES]
    if failed:
        return Verdict("failed", f"{label}: dbt reported a failure\n" + "\n".join(lines))
    reported = [status for status in statuses.values() if status]
    if reported and all(status["status"] in PASSED_STATUSES for status in reported) and not missing:
        return Verdict("success", f"{label}: done\n" + "\n".join(lines))
    if missing and all(status is None or status["status"] in PASSED_STATUSES for status in statuses.values()):
        # the build finished without these nodes: dbt excluded them (e.g. a test whose parent was not selected)
        return Verdict("skipped", f"{label}: not part of this build\n" + "\n".join(lines))
    return Verdict("skipped", f"{label}: not rebuilt in this run\n" + "\n".join(lines))


def parsing_for_task(task_id: str) -> bool:
    """True when this parse is a worker loading the DAG file to run exactly `task_id`."""
    from airflow.sdk import get_parsing_context

    return get_parsing_context().task_id == task_id


def _short(uid: str) -> str:
    """`test.fitlake.unique_users_user_id.dff2f` -> `unique_users_user_id`; `model.fitlake.users` -> `users`."""
    parts = uid.split(".")
    return parts[2] if len(parts) > 2 else uid


def _describe(uid: str, status: dict | None) -> str:
    if status is None:
        return f"  {_short(uid)}: not in this build"
    parts = [f"  {_short(uid)}: {status['status']}"]
    if status.get("seconds") is not None:
        parts.append(f"in {status['seconds']:.2f}s")
    if status.get("message"):
        parts.append(f"- {status['message']}")
    return " ".join(parts)


def status_file(run_id: str) -> Path:
    """Where the producer also writes its status payload: read without the API, where the data root is shared."""
    from fitlake_common import config

    return config.DBT_STATUS_DIR / (re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) + ".json")


class _RunStatusPoll:
    """The producer's status as one poll per run, shared by all the watchers of that run.

    Every API call goes through the triggerer's one channel to the API server, and while it waits the
    triggerer waits (a slow API server under load has held it for 30 s and more). So the API is asked
    only to learn that the producer runs and which attempt it is (its first XCom); after that the
    watchers read the status file the producer writes beside the warehouse, and ask the API again only
    when that file stops changing (a producer that died without a word). Where the triggerer cannot see
    the file, the XCom is read every second instead.
    """

    STATE_EVERY = 5.0  # at most this often, the producer's task state
    QUIET_FILE = 10.0  # a status file unchanged this long: check that the producer still runs
    NO_FILE_GRACE = 15.0  # no status file this long after the producer started: read the XCom instead

    def __init__(self, dag_id: str, run_id: str, producer_task_id: str):
        self.dag_id, self.run_id, self.producer_task_id = dag_id, run_id, producer_task_id
        self.lock = asyncio.Lock()
        self.fetched_at = 0.0
        self.state_at = 0.0
        self.started = False  # the producer has been seen running or finished
        self.started_at = 0.0
        self.attempt: str | None = None  # the producer attempt the payload belongs to
        self.payload: dict | None = None
        self.producer_state: str | None = None
        self.users = 0

    async def current(self, max_age: float) -> tuple[dict | None, str | None]:
        async with self.lock:
            if time.monotonic() - self.fetched_at >= max_age:
                from asgiref.sync import sync_to_async

                await sync_to_async(self._fetch)()
                self.fetched_at = time.monotonic()
            return self.payload, self.producer_state

    def _fetch(self) -> None:
        finished = bool(self.payload and self.payload.get("done"))
        if not self.started:
            self._fetch_state()
            # XComs of an earlier attempt are cleared when the producer starts running: a payload read after
            # seeing it running (or finished) belongs to the current attempt, one read before may not.
            self.started = self.producer_state in ("running", *PRODUCER_FINAL_STATES)
            self.started_at = time.monotonic()
        if not self.started:
            return
        on_file, age = self._read_status_file()
        if on_file is not None and on_file.get("attempt") == self.attempt:
            self.payload = on_file
        elif on_file is not None or time.monotonic() - self.started_at >= self.NO_FILE_GRACE:
            # A file of an attempt not known yet (the producer writes its XCom before the file, so that XCom
            # exists), or no file at all where the triggerer cannot see the data root: the XCom says.
            self.payload = self._fetch_xcom()
            self.attempt = (self.payload or {}).get("attempt")
            if on_file is not None and on_file.get("attempt") == self.attempt:
                self.payload = on_file
            else:
                age = None
        quiet = age is None or age >= self.QUIET_FILE
        if not finished and quiet and time.monotonic() - self.state_at >= self.STATE_EVERY:
            self._fetch_state()

    def _read_status_file(self) -> tuple[dict | None, float | None]:
        """The producer's status file as it is now, and how many seconds ago it was written."""
        path = status_file(self.run_id)
        try:
            payload = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return None, None
        return payload, max(age, 0.0)

    def _fetch_state(self) -> None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(
            dag_id=self.dag_id, task_ids=[self.producer_task_id], run_ids=[self.run_id]
        )
        state = states.get(self.run_id, {}).get(self.producer_task_id)
        self.producer_state = str(getattr(state, "value", state)) if state is not None else None
        self.state_at = time.monotonic()

    def _fetch_xcom(self) -> dict | None:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_one(
            run_id=self.run_id, key=STATUS_XCOM_KEY, task_id=self.producer_task_id, dag_id=self.dag_id, map_index=-1
        )


_POLLS: dict[tuple[str, str], _RunStatusPoll] = {}


class DbtNodeStatusTrigger(BaseTrigger):
    """Waits in the triggerer until the watched dbt nodes are final, then ends the watcher task."""

    def __init__(self, watched: list[str], label: str, producer_task_id: str = PRODUCER_TASK_ID, poll_seconds=None):
        super().__init__()
        self.watched = list(watched)
        self.watch_label = label
        self.producer_task_id = producer_task_id
        self.poll_seconds = float(poll_seconds or POLL_SECONDS)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "watched": self.watched,
                "label": self.watch_label,
                "producer_task_id": self.producer_task_id,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti = self.task_instance
        key = (ti.dag_id, ti.run_id)
        poll = _POLLS.setdefault(key, _RunStatusPoll(ti.dag_id, ti.run_id, self.producer_task_id))
        poll.users += 1
        try:
            while True:
                payload, producer_state = await poll.current(max_age=self.poll_seconds)
                result = verdict(self.watched, self.watch_label, payload, producer_state)
                if result is not None:
                    self.log.info("%s", result.message)
                    # The triggerer closes a trigger's log file when the trigger reports it finished, and
                    # its log lines travel on another socket: give them a head start, or the task log would
                    # lack the verdict (seen with skipped tasks, which end without callbacks).
                    await asyncio.sleep(LOG_HEAD_START_SECONDS)
                    yield _END_EVENTS[result.state]()
                    return
                await asyncio.sleep(self.poll_seconds / 2)
        finally:
            poll.users -= 1
            if poll.users <= 0:
                _POLLS.pop(key, None)


_END_EVENTS = {"success": TaskSuccessEvent, "failed": TaskFailedEvent, "skipped": TaskSkippedEvent}


class DbtNodeWatcher(BaseOperator):
    """Shows the state of some dbt nodes of the run's one build (see the module docstring).

    It normally never reaches a worker: the scheduler hands it straight to the triggerer. `execute`
    covers the rest (`airflow dags test`, or a triggerer that declined it): it looks once and asks to
    be rescheduled while the build runs, so it never blocks a worker slot waiting.
    """

    ui_color = "#e8f4ea"
    ui_fgcolor = "#1b4d2b"
    start_from_trigger = True
    template_fields = ()

    def __init__(self, *, watched: list[str], label: str, producer_task_id: str = PRODUCER_TASK_ID, **kwargs):
        kwargs.setdefault("trigger_rule", "always")
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.watched = list(watched)
        self.watch_label = label
        self.producer_task_id = producer_task_id
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=f"{DbtNodeStatusTrigger.__module__}.{DbtNodeStatusTrigger.__qualname__}",
            trigger_kwargs={"watched": self.watched, "label": label, "producer_task_id": producer_task_id},
            next_method="execute_complete",
            next_kwargs=None,
            timeout=WATCH_TIMEOUT,
        )

    def execute(self, context) -> None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = context["ti"]
        states = RuntimeTaskInstance.get_task_states(
            dag_id=ti.dag_id, task_ids=[self.producer_task_id], run_ids=[ti.run_id]
        )
        state = states.get(ti.run_id, {}).get(self.producer_task_id)
        state = str(state.value if hasattr(state, "value") else state) if state is not None else None
        payload = ti.xcom_pull(task_ids=self.producer_task_id, key=STATUS_XCOM_KEY)
        result = verdict(self.watched, self.watch_label, payload, state)
        if result is None:
            raise AirflowRescheduleException(datetime.now(UTC) + timedelta(seconds=2))
        self.log.info("%s", result.message)
        if result.state == "failed":
            raise AirflowFailException(result.message)
        if result.state == "skipped":
            raise AirflowSkipException(result.message)

    def execute_complete(self, context, event=None) -> None:
        """Not reached: the trigger ends the task itself. Kept for a triggerer that resumes instead."""
        if isinstance(event, dict) and event.get("task_instance_state") == "failed":
            raise AirflowFailException(f"{self.watch_label}: dbt reported a failure (see the trigger log)")
