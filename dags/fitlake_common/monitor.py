"""Task bodies of the monitor DAG: run the health checks, record them, alert, refresh snapshot and dashboard.

* `warehouse_checks` runs `dbt source freshness` and `dbt build --select tag:health` (the health
  models and their tests) in its own process, on one parse of the project, and reads
  `health.health_check_results`. It is the only step besides the snapshot export that opens the
  warehouse, in the `duckdb_warehouse` pool, and it closes the file before it ends.
* `source_checks` reconciles the SQL source and the Kafka topics with the landing zone
  (`ingestion.reconcile`): no warehouse, no pool.
* `record` appends every result to the health history; `alert` notifies on failing ones.

A check that *fails* is data, not a crash: it becomes a row with its status, and the run goes on.
A check that cannot run at all (dbt could not start, the warehouse is missing) is recorded as an
`error` row of check `dbt` naming what failed, so it alerts like any failed check.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from fitlake_common import config, health
from fitlake_common.health import CheckResult

log = logging.getLogger(__name__)


def _wait_for_warehouse(timeout: float = 60.0) -> None:
    """Until no other process holds the warehouse. The pool keeps tasks apart, but a task's process is still
    exiting (closing DuckDB) for a moment after Airflow marks it done and hands its pool slot on."""
    import duckdb

    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            duckdb.connect(str(config.WAREHOUSE), read_only=True).close()
            if time.monotonic() - started > 0.5:
                log.info("the warehouse was free after %.1fs", time.monotonic() - started)
            return
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _release_warehouse() -> None:
    """dbt-duckdb keeps its DuckDB connection open until the process exits (keep_open): close it now, so the
    next task of the pool (a transform) finds the file free as soon as this one is done."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()


def _run_dbt(target: Path):
    """`dbt source freshness`, then `dbt build --select tag:health`, in this process on one parse of the
    project; returns both results. The transform's partial parse (same project and profile) is reused."""
    from fitlake_common.dbt_session import PARTIAL_PARSE, DbtSession

    transform_parse = config.DBT_TARGET_DIR / PARTIAL_PARSE
    own_parse = target / transform_parse.name
    if transform_parse.exists() and (
        not own_parse.exists() or transform_parse.stat().st_mtime > own_parse.stat().st_mtime
    ):
        shutil.copy2(transform_parse, own_parse)
    session = DbtSession(target_dir=target)
    try:
        freshness = session.invoke(["source", "freshness"])
        build = session.invoke(["build", "--select", "tag:health"])
    finally:
        _release_warehouse()
    return freshness, build


def warehouse_checks() -> list[dict]:
    """Freshness, volume, duplicates and quarantine rate, as history rows."""
    if not config.WAREHOUSE.exists():
        detail = f"no warehouse at {config.WAREHOUSE} yet: the transform_dbt DAG builds it"
        return [CheckResult("dbt", "warehouse", "error", detail=detail).as_dict()]
    results: list[CheckResult] = []
    # a target dir of its own, kept between runs (its partial parse), apart from the transform's artefacts
    target = health.HEALTH_DIR / "dbt_target"
    target.mkdir(parents=True, exist_ok=True)
    for stale in ("sources.json", "run_results.json"):
        (target / stale).unlink(missing_ok=True)
    started = time.monotonic()
    _wait_for_warehouse()
    try:
        _, build = _run_dbt(target)
    except Exception as exc:  # noqa: BLE001 - dbt could not start: recorded as a failing check, named
        log.exception("dbt could not run the health checks")
        return [CheckResult("dbt", "health models", "error", detail=f"dbt could not run: {exc}"[:1000]).as_dict()]
    sources = target / "sources.json"
    if sources.exists():
        results += health.freshness_results(json.loads(sources.read_text()))
    else:
        results.append(
            CheckResult("dbt", "source freshness", "error", detail="dbt source freshness did not run; see the log")
        )
    results += _failed_health_nodes(target / "run_results.json", build)
    results += _read_check_results()
    log.info("warehouse checks in %.1fs: %s", time.monotonic() - started, health.summary_line(results))
    return [r.as_dict() for r in results]


def _failed_health_nodes(run_results: Path, build) -> list[CheckResult]:
    """A health model that could not be built means its checks did not run: say which and why."""
    if not run_results.exists():
        why = getattr(build, "exception", None) or "see the log"
        return [
            CheckResult("dbt", "health models", "error", detail=f"dbt build --select tag:health did not run: {why}")
        ]
    failed = []
    for result in json.loads(run_results.read_text()).get("results", []):
        if result["unique_id"].startswith("model.") and result["status"] in ("error", "skipped"):
            name = result["unique_id"].rsplit(".", 1)[-1]
            message = (result.get("message") or "skipped: an upstream health model failed").strip()
            failed.append(CheckResult("dbt", name, "error", detail=f"health model not built: {message[:500]}"))
    return failed


def _read_check_results() -> list[CheckResult]:
    import duckdb

    if not config.WAREHOUSE.exists():
        return [
            CheckResult("dbt", "warehouse", "error", detail=f"no warehouse at {config.WAREHOUSE}: run transform_dbt")
        ]
    try:
        with duckdb.connect(str(config.WAREHOUSE), read_only=True) as con:
            rows = con.execute(
                "select check_name, entity, status, value, threshold, detail, layer from health.health_check_results"
            ).fetchall()
    except duckdb.Error as exc:
        return [CheckResult("dbt", "health_check_results", "error", detail=f"cannot read the health checks: {exc}")]
    names = ("check_name", "entity", "status", "value", "threshold", "detail", "layer")
    return [CheckResult.from_dict(dict(zip(names, row))) for row in rows]


def source_checks() -> list[dict]:
    """SQL reconciliation and Kafka lag (the source systems against the landing zone)."""
    from ingestion.config import load_settings
    from ingestion.errors import FitLakeError
    from ingestion.reconcile import kafka_lag, reconcile_sql

    try:
        settings = load_settings()
    except FitLakeError as exc:
        return [CheckResult("reconciliation", "settings", "error", detail=str(exc)).as_dict()]
    results = [r.as_dict() for r in reconcile_sql(settings, max_lost=health.RECONCILE_MAX_LOST)]
    results += [r.as_dict() for r in kafka_lag(settings, max_lag=health.KAFKA_LAG_MAX)]
    for row in results:
        row.pop("metrics", None)
    return results


def record(rows: list[dict], dag_id: str, run_id: str) -> dict:
    """Append the run's results to the health history; return the failing ones and those to alert on.

    A check that keeps failing is alerted once (then again every FITLAKE_ALERT_REPEAT_HOURS, or when it
    gets worse), not on every hourly run: the history says which rows were alerted.
    """
    from datetime import UTC, datetime

    from fitlake_common.alerts import run_url

    results = [CheckResult.from_dict(r) for r in rows]
    now = datetime.now(UTC).replace(tzinfo=None)
    previous = health.previous_state(run_id)
    reasons = {}
    for r in results:
        reason = health.alert_reason(r, previous.get((r.check_name, r.entity)), now)
        if reason:
            reasons[(r.check_name, r.entity)] = reason
    path = health.write_history(results, run_id, now, run_url=run_url(dag_id, run_id), alerted=frozenset(reasons))
    failing = [r.as_dict() for r in results if r.failing]
    to_alert = [
        {**r, "reason": reasons[(r["check_name"], r["entity"])]}
        for r in failing
        if (r["check_name"], r["entity"]) in reasons
    ]
    log.info("health: %s; %d row(s) in %s", health.summary_line(results), len(results), path)
    for r in failing:
        why = reasons.get((r["check_name"], r["entity"]), "alerted before: not repeated")
        log.warning("FAILING %s %s/%s (%s): %s", r["status"], r["check_name"], r["entity"], why, r["detail"])
    return {"path": str(path), "checks": len(results), "failing": failing, "alert": to_alert}


def alert(recorded: dict, dag_id: str, run_id: str, context=None) -> list[str]:
    from fitlake_common.alerts import send_health_alert

    to_alert = recorded.get("alert", [])
    still = [r for r in recorded["failing"] if not _same_check(r, to_alert)]
    if not to_alert:
        log.info(
            "no alert: %s",
            f"{len(still)} check(s) still failing, alerted before" if still else "every check passed",
        )
        return []
    return send_health_alert(to_alert, dag_id, run_id, context, still_failing=still)


def _same_check(row: dict, rows: list[dict]) -> bool:
    return any((row["check_name"], row["entity"]) == (r["check_name"], r["entity"]) for r in rows)


def snapshot_wanted(params: dict | None, triggering_asset_events) -> str | None:
    """Why the snapshot is exported now: after a successful transform (the gold Asset event), on request,
    or when there is none yet; None: the current one stays."""
    from fitlake_common import snapshot

    try:
        events = [e for evs in (triggering_asset_events or {}).values() for e in evs]
    except (AttributeError, TypeError):
        events = list(triggering_asset_events or [])
    if events:
        return f"a transform published gold ({len(events)} event(s))"
    if (params or {}).get("refresh_snapshot"):
        return "requested (refresh_snapshot)"
    if snapshot.current_dir() is None:
        return "there is no snapshot yet"
    return None


def refresh_snapshot(params: dict | None, triggering_asset_events, source: str) -> dict:
    """Export gold to a new snapshot when one is wanted (else skip: the dashboard keeps the current one)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from fitlake_common import snapshot

    why = snapshot_wanted(params, triggering_asset_events)
    if why is None:
        message = "no transform since the last snapshot: the current one stays (Param refresh_snapshot forces one)"
        log.info("%s", message)
        raise AirflowSkipException(message)
    meta = snapshot.export(config.WAREHOUSE, source=source)
    log.info("snapshot (%s) %s: %s rows in %.1fs", why, meta["path"], meta["rows"], meta["seconds"])
    return meta


def build_dashboard() -> str:
    from fitlake_common import dashboard

    path = dashboard.build()
    log.info("dashboard written to %s (Airflow UI: Browse > FitLake dashboard)", path)
    return str(path)
