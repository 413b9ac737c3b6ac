"""The one dbt build of a transform_dbt run: plan it, wait for landings in flight, build, report, docs.

This module is the order of one `dbt_build` task; each step's own logic lives beside it:
1. plans the run from its Params (as-of date, full refresh, a selector and the models upstream of it);
2. waits (bounded) while a landing DAG run is in flight, and skips the build when nothing is new
   since the last successful build (`nothing_new`);
3. runs `dbt build` in this process (`dbt_session`), with every error-level test gating all children
   of the model it tests, while each node's status is published for the watchers (`dbt_status`);
4. regenerates the dbt docs when what they show changed (`dbt_docs`);
5. records what the build covered, for step 2 of the next run (`nothing_new.BuildRecord`).

The DuckDB file is only ever opened by this task.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import time
from dataclasses import asdict, dataclass, field

from fitlake_common import config
from fitlake_common.dbt_docs import DOCS_NODE, docs_are_current, docs_fingerprint, generate_docs
from fitlake_common.dbt_runtime import resolve_as_of_date, with_downstream_models, with_upstream_models
from fitlake_common.dbt_session import DbtSession, gated_by_tested_model, release_named_semaphores
from fitlake_common.dbt_status import (
    NodeStatusBoard,
    _failures,
    explain_skips,
    mark_unselected,
    remove_old_status_files,
    skip_reason,
)
from fitlake_common.dbt_watchers import STATUS_XCOM_KEY, status_file
from fitlake_common.nothing_new import (
    BuildRecord,
    NothingNew,
    _warehouse_inode,
    landing_fingerprint,
    project_fingerprint,
    unchanged_since,
    wait_for_landings,
)
from fitlake_common.unfinished_refresh import UnfinishedFullRefresh, finish_unfinished_refresh

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    as_of_date: str
    full_refresh: bool = False
    select: str | None = None
    models: list[str] | None = None  # None: every model

    @property
    def selective(self) -> bool:
        return self.select is not None


@dataclass
class BuildSummary:
    built: bool
    reason: str
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    docs: str = "current"
    plan: dict = field(default_factory=dict)


# --- the plan ---------------------------------------------------------------------------------------


def make_plan(params: dict, dag_run) -> RunPlan:
    """The run's choices from its Params; a selector is resolved to models later (`resolve_selection`)."""
    plan = RunPlan(
        as_of_date=resolve_as_of_date(params.get("as_of_date"), dag_run),
        full_refresh=bool(params.get("full_refresh")),
        select=(params.get("select") or "").strip() or None,
    )
    log.info(
        "plan: as_of_date=%s full_refresh=%s select=%s", plan.as_of_date, plan.full_refresh, plan.select or "(all)"
    )
    return plan


def resolve_selection(plan: RunPlan, session: DbtSession) -> None:
    """The models a selector matches, and every model upstream of them (`with_upstream_models`)."""
    if not plan.select:
        return
    matched = session.models_matching(plan.select)
    plan.models = with_upstream_models(matched, session.target_dir / "manifest.json")
    if len(plan.models) > len(matched):
        log.info(
            "the selector matches %s; their upstream models build too (an incremental model must not run ahead "
            "of its parents): %s",
            ", ".join(matched),
            ", ".join(sorted(set(plan.models) - set(matched))),
        )
    log.info("selected models (%d): %s", len(plan.models), ", ".join(plan.models))


def refresh_downstream_too(plan: RunPlan, session: DbtSession) -> None:
    """A full refresh of incremental models that carry `load_time` rebuilds every model below them, and (in
    turn) their parents: the refreshed rows get new load times, which the models below would read again.
    (`date_lookup`, incremental without load times, refreshes alone.)"""
    if not plan.full_refresh or plan.models is None:
        return
    manifest = session.target_dir / "manifest.json"
    incremental = {
        node.name
        for node in session.manifest.nodes.values()
        if node.resource_type == "model" and node.config.materialized == "incremental" and "load_time" in node.columns
    }
    chosen = set(plan.models)
    while True:
        below = with_downstream_models(sorted(chosen & incremental), manifest)
        closed = chosen | set(with_upstream_models(below, manifest))
        if closed == chosen:
            break
        chosen = closed
    if len(chosen) > len(plan.models):
        log.info(
            "a full refresh rebuilds the models below the refreshed incremental ones too (they would read the "
            "rebuilt rows again): %s",
            ", ".join(sorted(chosen - set(plan.models))),
        )
        plan.models = sorted(chosen)


def build_args(plan: RunPlan) -> list[str]:
    args = ["build", "--vars", json.dumps({"as_of_date": plan.as_of_date})]
    if plan.full_refresh:
        args.append("--full-refresh")
    if plan.models is not None:
        # cautious: a test runs only when all its parents are built (the other one may not exist yet)
        args += ["--select", *plan.models, "--indirect-selection", "cautious"]
    args += ["--exclude", *config.DBT_BUILD_EXCLUDE] if config.DBT_BUILD_EXCLUDE else []
    return args


# --- the task body ----------------------------------------------------------------------------------


def run_dbt_build(
    params: dict,
    dag_run,
    publish,
    landings_in_flight=lambda: [],
    run_id: str = "",
) -> BuildSummary:
    """Everything the `dbt_build` task does, callable without Airflow (`publish` takes the status payload)."""
    if config.DBT_ENGINE == "duckdb":
        config.WAREHOUSE.parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its directory
    board = NodeStatusBoard(publish).start()
    preparing = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbt-parse")
    session_ready = None
    try:
        plan = make_plan(params, dag_run)
        summary = BuildSummary(built=False, reason="", plan=asdict(plan))
        if landings_in_flight():
            # batches are on their way, so a build will follow: dbt's import and parse (seconds, and
            # nothing they need is landing) run while this task waits for them
            session_ready = preparing.submit(DbtSession)
        waited = wait_for_landings(landings_in_flight, config.TRANSFORM_COALESCE_SECONDS)
        if waited >= 1:
            log.info("landings finished after %.1fs of waiting", waited)
        # Decided without waiting for dbt: a run with nothing to do costs seconds.
        landing = landing_fingerprint(config.LANDING_ROOT)
        project = project_fingerprint(config.DBT_PROJECT_DIR)
        record = BuildRecord.load()
        if unchanged_since(record, plan, landing, project):
            reason = (
                f"nothing new since run {record.run_id} ({record.finished_at}): no file landed and neither the "
                f"project nor the as-of date {plan.as_of_date} changed; no build"
            )
            board.set(DOCS_NODE, "skipped", "docs current: nothing was built")
            board.skip_all("nothing new to build")
            summary.reason = reason
            raise NothingNew(reason)

        session = session_ready.result() if session_ready else DbtSession()
        resolve_selection(plan, session)
        finish_unfinished_refresh(plan)
        refresh_downstream_too(plan, session)
        summary.plan = asdict(plan)
        mark_unselected(board, session.manifest, plan)
        board.explain_skips_with(lambda uid, failed: skip_reason(session.manifest, uid, failed))
        # From here the warehouse is no longer what the last record says, until this build succeeds.
        BuildRecord.forget()
        if plan.full_refresh:
            UnfinishedFullRefresh(run_id=run_id, models=plan.models).save()
        started = time.monotonic()
        with gated_by_tested_model():
            result = session.invoke(build_args(plan), callbacks=[board.on_dbt_event])
        summary.seconds = round(time.monotonic() - started, 2)
        for node_result in getattr(result.result, "results", None) or []:
            # authoritative final statuses (the callback may miss a node dbt skipped without running)
            board.set(
                node_result.node.unique_id,
                str(getattr(node_result.status, "value", node_result.status)).lower(),
                node_result.message or None,
                node_result.execution_time,
            )
        explain_skips(board, session.manifest)
        summary.counts = _count(board.snapshot()["nodes"])
        summary.built = True
        if not result.success:
            board.set(DOCS_NODE, "skipped", "docs not regenerated: the build failed")
            summary.reason = f"dbt build failed: {_failures(board)}"
            raise RuntimeError(
                summary.reason + ". The failed tasks of this run show each failure; fix the data or "
                "the model, then clear this task (its watchers follow) or wait for the next run."
            )

        UnfinishedFullRefresh.forget()
        fingerprint = docs_fingerprint(session.manifest)
        current, why = docs_are_current(config.DBT_DOCS_DIR, fingerprint, session.manifest, session.models_left_out)
        if current:
            summary.docs = f"current ({why})"
            board.set(DOCS_NODE, "skipped", f"docs current: {why}")
        else:
            log.info("dbt docs: %s; regenerating", why)
            summary.docs = generate_docs(session, fingerprint)
            board.set(DOCS_NODE, "success", f"docs {summary.docs} ({why})")
        if not plan.selective:
            BuildRecord(
                landing=landing,
                project=project,
                as_of_date=plan.as_of_date,
                warehouse_inode=_warehouse_inode(),
                run_id=run_id,
                finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            ).save()
        summary.reason = "built"
        log.info("dbt build done in %.1fs: %s; docs %s", summary.seconds, summary.counts, summary.docs)
        return summary
    finally:
        preparing.shutdown(wait=False, cancel_futures=True)
        board.finish()


def _count(nodes: dict) -> dict:
    counts: dict[str, int] = {}
    for uid, status in nodes.items():
        if uid != DOCS_NODE:
            counts[status["status"]] = counts.get(status["status"], 0) + 1
    return dict(sorted(counts.items()))


def run_build_task(params: dict, ti, dag_run, outlet_events=None) -> dict:
    """Body of the `dbt_build` task."""
    from airflow.sdk.exceptions import AirflowSkipException
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def in_flight() -> list[str]:
        return [
            dag_id
            for dag_id in config.LANDING_DAG_IDS
            if RuntimeTaskInstance.get_dr_count(dag_id=dag_id, states=["queued", "running"])
        ]

    status = status_file(dag_run.run_id)
    status.parent.mkdir(parents=True, exist_ok=True)

    def publish(payload: dict) -> None:
        from ingestion.state import write_json_atomic

        # the XCom first: a watcher that sees the file may ask for the XCom (to learn the attempt)
        ti.xcom_push(key=STATUS_XCOM_KEY, value=payload)
        write_json_atomic(status, payload)

    remove_old_status_files()
    try:
        summary = run_dbt_build(params, dag_run, publish=publish, landings_in_flight=in_flight, run_id=dag_run.run_id)
    except NothingNew as nothing:
        log.info("%s", nothing)  # Airflow logs a skip without its reason
        raise AirflowSkipException(str(nothing)) from None
    finally:
        release_named_semaphores()
    if outlet_events is not None:
        from fitlake_common.assets import WAREHOUSE_GOLD_ASSET

        outlet_events[WAREHOUSE_GOLD_ASSET].extra = {"counts": summary.counts, "seconds": summary.seconds}
    return asdict(summary)
