"""One cycle through a running Airflow: trigger both landing DAGs together, wait until the transforms they
schedule have finished, and measure it from the task instances (what the UI shows).

Used by `make demo` (one cycle) and `make bench-airflow` (several, with a bare dbt build beside each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from launchers.airflow_api import AirflowApi, TaskInstance, parse_time

LANDING_DAGS = ("land_azure_sql", "land_kafka")
TRANSFORM_DAG = "transform_dbt"
PRODUCER = "dbt_build"
GOLD_TASKS = ("dbt.workout_bpm_summary.test", "dbt.gym_summary.test")


@dataclass
class RunTiming:
    dag_id: str
    run_id: str
    state: str
    queued: datetime
    start: datetime | None
    end: datetime | None
    tasks: list[TaskInstance] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """From the moment the run was created (queued) to its end: what a user waits."""
        return (self.end - self.queued).total_seconds() if self.end else float("nan")

    def task(self, task_id: str) -> TaskInstance | None:
        return next((t for t in self.tasks if t.task_id == task_id), None)

    @property
    def worker_tasks(self) -> list[TaskInstance]:
        """Tasks that ran a process on a worker (the watchers of transform_dbt live in the triggerer)."""
        if self.dag_id != TRANSFORM_DAG or self.task(PRODUCER) is None:
            return [t for t in self.tasks if t.start]
        return [t for t in self.tasks if t.task_id == PRODUCER and t.start]

    @property
    def busy_seconds(self) -> float:
        """Length of the union of all task intervals: time some task of the run was running."""
        spans = sorted((t.start, t.end) for t in self.tasks if t.start and t.end)
        total, current_start, current_end = 0.0, None, None
        for start, end in spans:
            if current_end is None or start > current_end:
                if current_end is not None:
                    total += (current_end - current_start).total_seconds()
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        if current_end is not None:
            total += (current_end - current_start).total_seconds()
        return total

    @property
    def gap_seconds(self) -> float:
        """Time within the run (queued to end) when no task of it was running: scheduling and hand-overs."""
        return self.seconds - self.busy_seconds

    @property
    def built(self) -> bool:
        """Some task of the run did dbt work (a run with nothing new skips every task)."""
        return any(t.state in ("success", "failed") for t in self.tasks)


@dataclass
class CycleTiming:
    started: datetime
    landings: list[RunTiming]
    transforms: list[RunTiming]

    @property
    def building(self) -> RunTiming | None:
        """The transform run that built this cycle's data (others found nothing new)."""
        built = [r for r in self.transforms if r.built]
        return built[0] if built else None

    @property
    def gold_updated(self) -> datetime | None:
        run = self.building
        ends = [t.end for t in (run.tasks if run else []) if t.task_id in GOLD_TASKS and t.end]
        return max(ends) if ends else None

    @property
    def end(self) -> datetime:
        return max(r.end for r in [*self.landings, *self.transforms] if r.end)

    @property
    def seconds(self) -> float:
        """First landing queued to the last transform finished: the whole cycle."""
        return (self.end - self.started).total_seconds()


def _timing(api: AirflowApi, dag_id: str, run: dict) -> RunTiming:
    return RunTiming(
        dag_id=dag_id,
        run_id=run["dag_run_id"],
        state=run["state"],
        queued=parse_time(run.get("queued_at")) or parse_time(run.get("run_after")),
        start=parse_time(run.get("start_date")),
        end=parse_time(run.get("end_date")),
        tasks=api.task_instances(dag_id, run["dag_run_id"]),
    )


def run_cycle(api: AirflowApi, timeout: float = 900, landing_conf: dict | None = None) -> CycleTiming:
    """Trigger both landing DAGs at once and wait until every transform they scheduled has finished."""
    known = {r["dag_run_id"] for r in api.runs(TRANSFORM_DAG)}
    run_ids = {dag_id: api.trigger(dag_id, landing_conf) for dag_id in LANDING_DAGS}
    landings = [api.wait_for_run(dag_id, run_id, timeout=timeout) for dag_id, run_id in run_ids.items()]
    landing_timings = [_timing(api, dag_id, run) for dag_id, run in zip(LANDING_DAGS, landings, strict=True)]
    # A landing task that landed rows succeeded and published its Asset (one with nothing new is skipped):
    # those events schedule transform_dbt. Wait until it has runs and none of them is left in flight.
    landed = any(t.state == "success" for run in landing_timings for t in run.tasks)
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in api.wait_until_idle(TRANSFORM_DAG, timeout=timeout) if r["dag_run_id"] not in known]
        if runs or not landed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    transforms = sorted((_timing(api, TRANSFORM_DAG, r) for r in runs), key=lambda r: r.queued)
    return CycleTiming(started=min(r.queued for r in landing_timings), landings=landing_timings, transforms=transforms)


def describe_run(run: RunTiming) -> str:
    states: dict[str, int] = {}
    for t in run.tasks:
        states[t.state or "none"] = states.get(t.state or "none", 0) + 1
    workers = run.worker_tasks
    return (
        f"{run.dag_id} {run.state} in {run.seconds:.1f}s: {len(run.tasks)} tasks "
        f"({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); "
        f"{len(workers)} on workers, {sum(t.duration or 0 for t in workers):.1f}s of task time; "
        f"gaps {run.gap_seconds:.1f}s"
    )
