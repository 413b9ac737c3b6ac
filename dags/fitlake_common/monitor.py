"""Task bodies of the monitor DAG: run the health checks, record them, alert, refresh snapshot and dashboard.

* `warehouse_checks` runs `dbt source freshness` and `dbt build --select tag:health` (the health
  models and their tests) and reads `health.health_check_results`. It is the only step besides the
  snapshot export that opens the warehouse, in the `duckdb_warehouse` pool, for a few seconds.
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
import os
import shutil
import subprocess
import time
from pathlib import Path

from fitlake_common import config, health
from fitlake_common.health import CheckResult

log = logging.getLogger(__name__)


def _dbt(args: list[str], target: Path) -> subprocess.CompletedProcess:
    """dbt in a subprocess: when it exits, its hold on the DuckDB file is gone for sure."""
    partial = config.DBT_MANIFEST.parent / "partial_parse.msgpack"
    if partial.exists() and not (target / partial.name).exists():
        shutil.copy(partial, target / partial.name)  # reuse `make dbt-manifest`'s parse: seconds saved
    command = [
        config.DBT_EXECUTABLE,
        *args,
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROFILES_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    ]
    log.info("dbt %s", " ".join(args))
    started = time.monotonic()
    done = subprocess.run(command, env={**os.environ, **config.DBT_ENV}, capture_output=True, text=True)
    log.info("dbt %s: exit %d in %.1fs\n%s", args[0], done.returncode, time.monotonic() - started, done.stdout[-6000:])
    if done.stderr.strip():
        log.warning("dbt stderr:\n%s", done.stderr[-3000:])
    return done


def warehouse_checks() -> list[dict]:
    """Freshness, volume, duplicates and quarantine rate, as history rows."""
    config.WAREHOUSE.parent.mkdir(parents=True, exist_ok=True)
    results: list[CheckResult] = []
    # a target dir of its own, kept between runs: dbt reuses its partial parse (seconds per run)
    target = health.HEALTH_DIR / "dbt_target"
    target.mkdir(parents=True, exist_ok=True)
    for stale in ("sources.json", "run_results.json"):
        (target / stale).unlink(missing_ok=True)
    _dbt(["source", "freshness"], target)
    sources = target / "sources.json"
    if sources.exists():
        results += health.freshness_results(json.loads(sources.read_text()))
    else:
        results.append(
            CheckResult("dbt", "source freshness", "error", detail="dbt source freshness did not run; see the log")
        )
    build = _dbt(["build", "--select", "tag:health"], target)
    results += _failed_health_nodes(target / "run_results.json", build)
    results += _read_check_results()
    log.info("warehouse checks: %s", health.summary_line(results))
    return [r.as_dict() for r in results]


def _failed_health_nodes(run_results: Path, build: subprocess.CompletedProcess) -> list[CheckResult]:
    """A health model that could not be built means its checks did not run: say which and why."""
    if not run_results.exists():
        tail = (build.stdout or build.stderr)[-500:]
        return [
            CheckResult("dbt", "health models", "error", detail=f"dbt build --select tag:health did not run: {tail}")
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
    """Append the run's results to the health history; return the failing ones for the alert."""
    from fitlake_common.alerts import run_url

    results = [CheckResult.from_dict(r) for r in rows]
    path = health.write_history(results, run_id, run_url=run_url(dag_id, run_id))
    failing = [r.as_dict() for r in results if r.failing]
    log.info("health: %s; %d row(s) in %s", health.summary_line(results), len(results), path)
    for r in failing:
        log.warning("FAILING %s %s/%s: %s", r["status"], r["check_name"], r["entity"], r["detail"])
    return {"path": str(path), "checks": len(results), "failing": failing}


def alert(recorded: dict, dag_id: str, run_id: str, context=None) -> list[str]:
    from fitlake_common.alerts import send_health_alert

    failing = recorded["failing"]
    if not failing:
        log.info("every check passed: no alert")
        return []
    return send_health_alert(failing, dag_id, run_id, context)


def should_refresh_snapshot(params: dict, triggering_asset_events) -> bool:
    """After a successful transform (the gold Asset event), on request, or when there is none yet."""
    from fitlake_common import snapshot

    if params.get("refresh_snapshot"):
        return True
    if snapshot.current_dir() is None:
        return True
    try:
        return bool(triggering_asset_events) and any(True for _ in triggering_asset_events.values())
    except AttributeError:
        return bool(triggering_asset_events)


def refresh_snapshot(source: str) -> dict:
    from fitlake_common import snapshot

    meta = snapshot.export(config.WAREHOUSE, source=source)
    log.info("snapshot %s: %s rows in %.1fs", meta["path"], meta["rows"], meta["seconds"])
    return meta


def build_dashboard() -> str:
    from fitlake_common import dashboard

    path = dashboard.build()
    log.info("dashboard written to %s (Airflow UI: Browse > FitLake dashboard)", path)
    return str(path)
