"""The monitor DAG through a real scheduler: the health history, alerts to a real SMTP server and webhook.

The installation (`health_installation`, tests/dags/health_support.py) has 8 simulated days landed
and built by a cycle, whose transform published the gold Asset and so ran the monitor: that run must
be healthy and alert nobody. Then, one by one, a stale source, a volume drop, a duplicate key in
bronze and a source row behind the watermark: each time the matching check (and only it) fails, its
row is in the health history, and an alert naming the check, the entity and the run reaches the SMTP
server and the webhook. Each injection is undone before the next. A check that keeps failing is not
alerted again on the next run. A run that crashes alerts through the DAG's failure callback, and a
full refresh of the warehouse runs the monitor again and leaves the history whole.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from datetime import datetime, timedelta

import duckdb
import pytest

from health.support import RECIPIENT, history, history_dir, run_monitor, wait_for_asset_triggered_monitor
from ingestion import azure_sql
from ingestion.source_tables import REGISTERED_USERS

SQL_TABLES = ("registered_users", "gym_logins")
TOPICS = ("user_info", "workout", "bpm")


def failing(rows: list[dict]) -> dict:
    return {(r["check_name"], r["entity"]): r for r in rows if r["status"] in ("warn", "error")}


def run_path(run: dict) -> str:
    return f"/dags/monitor/runs/{urllib.parse.quote(run['dag_run_id'], safe='')}"


def health_alerts(inst, run: dict) -> tuple[list, list]:
    """The e-mails and webhook posts about this monitor run (each names its run)."""
    return inst.smtp.matching(run_path(run)), inst.webhook.matching(run_path(run))


def assert_alerted(inst, run: dict, check: str, entity: str) -> None:
    mails = inst.smtp.wait_for(run_path(run))
    assert len(mails) == 1, [m["Subject"] for m in inst.smtp.messages]
    [mail] = mails
    text = inst.smtp.text(mail)
    assert mail["Subject"].startswith("[FitLake] health "), mail["Subject"]
    assert f"{check} {entity}" in mail["Subject"] and f"<td>{check}</td><td>{entity}</td>" in text, text
    assert mail["To"] == RECIPIENT
    assert inst.airflow.url + run_path(run) in text  # a link to the run, on the installation's own URL
    [post] = inst.webhook.wait_for(run_path(run))
    assert f"{check} / {entity}" in post["text"]


@pytest.fixture(scope="module")
def inst(health_installation):
    return health_installation


@pytest.fixture
def warehouse_free(inst):
    """Nothing runs that opens the warehouse: a test may change it directly for the length of a run."""
    inst.api.wait_until_idle("transform_dbt", settle=0.5)
    inst.api.wait_until_idle("monitor", settle=0.5)
    return inst.warehouse


def test_after_a_transform_the_monitor_runs_records_every_check_and_alerts_nobody(inst):
    [build] = [r for r in inst.first_cycle.transforms if r.built]
    assert build.state == "success"
    run = inst.first_monitor_run
    assert run["run_type"] == "asset_triggered" and run["state"] == "success", run["task_states"]
    assert set(run["task_states"].values()) == {"success"}, run["task_states"]  # the snapshot too
    rows = history(inst, run["dag_run_id"])
    checks = {(r["check_name"], r["entity"]) for r in rows}
    for entity in (*SQL_TABLES, *TOPICS):
        assert {("freshness", entity), ("volume", entity), ("quarantine_rate", entity)} <= checks, entity
    assert {("reconciliation", t) for t in SQL_TABLES} <= checks
    assert {("kafka_lag", t) for t in TOPICS} <= checks
    for table in ("kafka_multiplex_bz", "registered_users_bz", "gym_logins_bz", "users", "heart_rate"):
        assert ("duplicates", table) in checks
    assert {("duplicates", "gym_summary"), ("volume", "gym_summary"), ("volume", "workout_bpm_summary")} <= checks
    assert not failing(rows), failing(rows)
    bpm = next(r for r in rows if (r["check_name"], r["entity"]) == ("volume", "bpm"))
    assert bpm["status"] == "pass" and bpm["value"] is not None, bpm  # judged against 7 earlier days
    assert all(r["run_url"].endswith(run_path(run)) for r in rows)
    assert not any(r["alerted"] for r in rows)
    # the run is over, and its alert task decided: nothing was sent, by any channel
    assert inst.smtp.messages == [] and inst.webhook.bodies == []
    log = inst.api.task_log("monitor", run["dag_run_id"], "refresh_snapshot")
    assert "a transform published gold" in log


def test_a_stale_source_fails_freshness_alerts_once_and_is_recorded_on_every_run(inst):
    files = [p for p in (inst.data_root / "landing" / "sql" / "gym_logins").rglob("*.parquet")]
    assert files
    old = time.time() - 30 * 3600
    for path in files:
        os.utime(path, (old, old))
    try:
        first = run_monitor(inst)
        again = run_monitor(inst)  # an hour later, still stale
    finally:
        for path in files:
            os.utime(path, None)
    for run in (first, again):
        assert run["state"] == "success", run["task_states"]
        assert set(failing(history(inst, run["dag_run_id"]))) == {("freshness", "gym_logins")}
    row = failing(history(inst, first["dag_run_id"]))[("freshness", "gym_logins")]
    assert row["status"] == "error" and 29.9 < row["value"] < 31 and row["threshold"] == 24 and row["alerted"]
    assert "30.0 h ago" in row["detail"] or "29.9 h ago" in row["detail"]
    assert_alerted(inst, first, "freshness", "gym_logins")
    # the second run records the failure again, and alerts nobody: it was alerted an hour ago
    assert not failing(history(inst, again["dag_run_id"]))[("freshness", "gym_logins")]["alerted"]
    assert health_alerts(inst, again) == ([], [])
    log = inst.api.task_log("monitor", again["dag_run_id"], "alert")
    assert "1 check(s) still failing, alerted before" in log


def test_a_volume_drop_fails_the_volume_check_and_alerts(inst, warehouse_free):
    with duckdb.connect(str(warehouse_free)) as con:
        [(day,)] = con.execute(
            "select day from health.health_daily_volume where entity = 'bpm' and is_evaluated_day"
        ).fetchall()
        con.execute(
            "create table main.dropped as select * from bronze.kafka_multiplex_bz where topic = 'bpm' and date = ?",
            [day],
        )
        assert con.execute("select count(*) from main.dropped").fetchone()[0] > 100
        con.execute("delete from bronze.kafka_multiplex_bz where topic = 'bpm' and date = ?", [day])
    try:
        run = run_monitor(inst)
    finally:
        with duckdb.connect(str(warehouse_free)) as con:
            con.execute("insert into bronze.kafka_multiplex_bz select * from main.dropped")
            con.execute("drop table main.dropped")
    assert run["state"] == "success", run["task_states"]
    found = failing(history(inst, run["dag_run_id"]))
    assert set(found) == {("volume", "bpm")}, found
    row = found[("volume", "bpm")]
    assert row["status"] == "warn" and row["value"] == -1.0 and row["threshold"] == 0.8
    assert f"{day}: 0 rows against a trailing 7-day mean" in row["detail"]
    assert_alerted(inst, run, "volume", "bpm")


def test_a_duplicate_key_in_bronze_fails_the_duplicates_check_and_alerts(inst, warehouse_free):
    with duckdb.connect(str(warehouse_free)) as con:
        con.execute("create table main.copied as select * from bronze.registered_users_bz limit 1")
        con.execute("insert into bronze.registered_users_bz select * from main.copied")
    try:
        run = run_monitor(inst)
    finally:
        with duckdb.connect(str(warehouse_free)) as con:
            # both copies go, the original comes back: the table is as it was
            con.execute(
                "delete from bronze.registered_users_bz where (user_id, modified_at, source_file) in "
                "(select (user_id, modified_at, source_file) from main.copied)"
            )
            con.execute("insert into bronze.registered_users_bz select * from main.copied")
            con.execute("drop table main.copied")
    found = failing(history(inst, run["dag_run_id"]))
    assert set(found) == {("duplicates", "registered_users_bz")}, found
    row = found[("duplicates", "registered_users_bz")]
    assert row["status"] == "error" and row["value"] == 1 and row["layer"] == "bronze"
    assert "1 duplicated key(s) (1 extra rows" in row["detail"]
    assert_alerted(inst, run, "duplicates", "registered_users_bz")


def test_a_source_row_behind_the_watermark_fails_reconciliation_and_alerts(inst):
    """The loss of the issue: a row the source application stamped far behind the lander's watermark."""
    settings = inst.settings
    dialect = azure_sql.source_dialect(settings)
    table = dialect.table(settings.source_schema, "registered_users")
    conn = azure_sql.connect_source(settings)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT MIN(modified_at) FROM {table}")
        first = cursor.fetchone()[0]
        behind = (datetime.fromisoformat(first) if isinstance(first, str) else first) - timedelta(days=1)
        azure_sql.insert_rows(
            conn,
            dialect,
            settings.source_schema,
            REGISTERED_USERS,
            [(99999, 99999, "ff:ff:ff:ff:ff:ff", behind, behind)],
        )
        try:
            run = run_monitor(inst)
        finally:
            cursor.execute(f"DELETE FROM {table} WHERE user_id = 99999")
    finally:
        conn.close()
    found = failing(history(inst, run["dag_run_id"]))
    assert set(found) == {("reconciliation", "registered_users")}, found
    row = found[("reconciliation", "registered_users")]
    assert row["status"] == "error" and row["value"] == 1 and row["threshold"] == 0
    assert "1 source version(s) (1 key(s)) behind the watermark never landed" in row["detail"]
    assert_alerted(inst, run, "reconciliation", "registered_users")


def test_a_crashed_run_fails_and_alerts_through_the_dag_failure_callback(inst):
    directory = history_dir(inst)
    moved = directory.with_name("history.moved")
    directory.rename(moved)
    directory.write_text("not a directory: the record task cannot write the history")
    try:
        run = run_monitor(inst)
    finally:
        directory.unlink()
        moved.rename(directory)
    assert run["state"] == "failed" and run["task_states"]["record"] == "failed", run["task_states"]
    assert run["task_states"]["alert"] == "upstream_failed"
    [mail] = inst.smtp.wait_for("DAG run failed: monitor", run_path(run), timeout=120)
    text = inst.smtp.text(mail)
    assert "Failed tasks: record" in text and inst.airflow.url + run_path(run) in text, text
    [post] = inst.webhook.wait_for("DAG run failed: monitor", timeout=30)
    assert "record" in post["text"]


def test_a_full_refresh_runs_the_monitor_again_and_the_history_survives_it(inst):
    before = history(inst)
    runs_before = {r["run_id"] for r in before}
    known = {r["dag_run_id"] for r in inst.api.runs("monitor")}
    transform = inst.transform({"full_refresh": True})
    assert transform["state"] == "success", transform["task_states"]
    run = wait_for_asset_triggered_monitor(inst, known)
    assert run["state"] == "success", run["task_states"]
    after = history(inst)
    assert {r["run_id"] for r in after} == runs_before | {run["dag_run_id"]}
    kept = [r for r in after if r["run_id"] in runs_before]
    key = lambda r: (r["run_id"], r["check_name"], r["entity"])  # noqa: E731
    assert sorted(map(key, kept)) == sorted(map(key, before)) and len(kept) == len(before)
    # the dashboard's snapshot was exported again, by that run (the transform rebuilt gold)
    snapshot = inst.api.json("GET", "/fitlake-api/v1/snapshot")
    assert run["dag_run_id"] in snapshot["source"]
    assert not failing(history(inst, run["dag_run_id"]))
