"""The monitor DAG through a real scheduler: health history, alerts to a real SMTP server and webhook.

One installation for the module: 8 simulated days (12 members, 2 gyms) landed and built, then
`airflow standalone`. A healthy run alerts nobody; then, one by one, a stale source, a volume drop, a
duplicate key in bronze and a source row behind the watermark: each time the matching check fails,
its row is in the health history, and an alert naming the check, the entity and the run reaches
the SMTP server and the webhook. Each injection is undone before the next. Finally a run that
crashes alerts through the DAG's failure callback.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta

import duckdb
import pytest
from health_stack import HealthInstallation

from ingestion import azure_sql
from ingestion.source_tables import REGISTERED_USERS

# A 12-member simulation varies a lot from day to day; the volume threshold is widened for this
# installation (FITLAKE_VOLUME_MAX_CHANGE, documented) and the injected drop removes the whole day.
ENV = {"FITLAKE_VOLUME_MAX_CHANGE": "0.8"}


@pytest.fixture(scope="module")
def installation(tmp_path_factory, dbt_manifest):
    started = time.monotonic()
    inst = HealthInstallation(tmp_path_factory.mktemp("fitlake-monitor"), dbt_manifest, ENV)
    try:
        inst.build_data(members=12, gyms=2, days=8, seed=5)
        inst.start_airflow()
        print(f"monitor installation ready in {time.monotonic() - started:.0f}s")
        yield inst
    finally:
        inst.stop()


def _failing(rows):
    return {(r["check_name"], r["entity"]): r for r in rows if r["status"] in ("warn", "error")}


def _assert_alerted(inst, run, check: str, entity: str):
    messages = inst.smtp.wait(1)
    assert len(messages) == 1, [m["Subject"] for m in messages]
    text = inst.smtp.text(messages[0])
    assert check in text and entity in text, text
    assert f"/dags/monitor/runs/{run['dag_run_id']}" in text.replace("%3A", ":").replace("%2B", "+"), text
    assert messages[0]["To"] == "ops@example.com"
    deadline = time.monotonic() + 30
    while not inst.webhook.bodies and time.monotonic() < deadline:
        time.sleep(0.5)
    [body] = inst.webhook.bodies
    assert check in body["text"] and entity in body["text"]


@pytest.fixture
def clean_inboxes(installation):
    installation.smtp.messages.clear()
    installation.webhook.bodies.clear()
    return installation


def test_a_healthy_run_records_every_check_and_raises_no_alert(clean_inboxes):
    inst = clean_inboxes
    run = inst.run_monitor({"refresh_snapshot": True})
    assert run["state"] == "success", run["task_states"]
    assert set(run["task_states"].values()) == {"success"}, run["task_states"]
    rows = inst.history(run["dag_run_id"])
    checks = {(r["check_name"], r["entity"]) for r in rows}
    for entity in ("registered_users", "gym_logins", "user_info", "workout", "bpm"):
        assert ("freshness", entity) in checks and ("volume", entity) in checks
        assert ("quarantine_rate", entity) in checks
    for entity in ("registered_users", "gym_logins"):
        assert ("reconciliation", entity) in checks
    for entity in ("user_info", "workout", "bpm"):
        assert ("kafka_lag", entity) in checks
    for entity in ("kafka_multiplex_bz", "registered_users_bz", "heart_rate", "gym_summary", "workout_bpm_summary"):
        assert ("duplicates", entity) in checks
    assert ("volume", "gym_summary") in checks and ("volume", "workout_bpm_summary") in checks
    assert not _failing(rows), _failing(rows)
    bpm_volume = next(r for r in rows if r["check_name"] == "volume" and r["entity"] == "bpm")
    assert bpm_volume["status"] == "pass" and bpm_volume["value"] is not None  # judged against 7 earlier days
    assert all(r["run_url"].endswith(run["dag_run_id"].replace(":", "%3A").replace("+", "%2B")) for r in rows)
    time.sleep(3)  # an alert would have been sent by now
    assert inst.smtp.messages == [] and inst.webhook.bodies == []


def _landing_files(inst, entity: str):
    return [p for p in (inst.data_root / "landing" / "sql" / entity).rglob("*") if p.is_file()]


def test_a_stale_source_fails_freshness_and_alerts(clean_inboxes):
    inst = clean_inboxes
    files = _landing_files(inst, "gym_logins")
    old = time.time() - 30 * 3600
    for path in files:
        os.utime(path, (old, old))
    try:
        run = inst.run_monitor()
    finally:
        for path in files:
            os.utime(path, None)
    failing = _failing(inst.history(run["dag_run_id"]))
    assert set(failing) == {("freshness", "gym_logins")}, failing
    row = failing[("freshness", "gym_logins")]
    assert row["status"] == "error" and 29.9 < row["value"] < 31 and row["threshold"] == 24
    _assert_alerted(inst, run, "freshness", "gym_logins")


def test_a_volume_drop_fails_the_volume_check_and_alerts(clean_inboxes):
    inst = clean_inboxes
    with duckdb.connect(str(inst.warehouse)) as con:
        [(day,)] = con.execute("select max(date) - 1 from bronze.kafka_multiplex_bz where topic = 'bpm'").fetchall()
        con.execute(
            "create table main.dropped as select * from bronze.kafka_multiplex_bz where topic = 'bpm' and date = ?",
            [day],
        )
        con.execute("delete from bronze.kafka_multiplex_bz where topic = 'bpm' and date = ?", [day])
    try:
        run = inst.run_monitor()
    finally:
        with duckdb.connect(str(inst.warehouse)) as con:
            con.execute("insert into bronze.kafka_multiplex_bz select * from main.dropped")
            con.execute("drop table main.dropped")
    failing = _failing(inst.history(run["dag_run_id"]))
    assert set(failing) == {("volume", "bpm")}, failing
    row = failing[("volume", "bpm")]
    assert row["status"] == "warn" and row["value"] == -1.0 and row["threshold"] == 0.8
    assert str(day) in row["detail"]
    _assert_alerted(inst, run, "volume", "bpm")


def test_a_duplicate_key_in_bronze_fails_the_duplicates_check_and_alerts(clean_inboxes):
    inst = clean_inboxes
    with duckdb.connect(str(inst.warehouse)) as con:
        con.execute("create table main.copied as select * from bronze.registered_users_bz limit 1")
        con.execute("insert into bronze.registered_users_bz select * from main.copied")
    try:
        run = inst.run_monitor()
    finally:
        with duckdb.connect(str(inst.warehouse)) as con:
            con.execute(
                "delete from bronze.registered_users_bz where (user_id, modified_at, source_file) in "
                "(select (user_id, modified_at, source_file) from main.copied)"
            )
            con.execute("insert into bronze.registered_users_bz select * from main.copied")
            con.execute("drop table main.copied")
    failing = _failing(inst.history(run["dag_run_id"]))
    assert set(failing) == {("duplicates", "registered_users_bz")}, failing
    assert failing[("duplicates", "registered_users_bz")]["value"] == 1
    _assert_alerted(inst, run, "duplicates", "registered_users_bz")


def test_a_source_row_behind_the_watermark_fails_reconciliation_and_alerts(clean_inboxes):
    inst = clean_inboxes
    conn = azure_sql.connect_source(inst.settings)
    dialect = azure_sql.source_dialect(inst.settings)
    table = dialect.table(inst.settings.source_schema, "registered_users")
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT MIN(modified_at) FROM {table}")
        first = cursor.fetchone()[0]
        behind = (first if not isinstance(first, str) else __import__("datetime").datetime.fromisoformat(first)) - (
            timedelta(days=1)
        )
        row = (99999, 99999, "ff:ff:ff:ff:ff:ff", behind, behind)
        azure_sql.insert_rows(conn, dialect, inst.settings.source_schema, REGISTERED_USERS, [row])
        try:
            run = inst.run_monitor()
        finally:
            cursor.execute(f"DELETE FROM {table} WHERE user_id = 99999")
    finally:
        conn.close()
    failing = _failing(inst.history(run["dag_run_id"]))
    assert set(failing) == {("reconciliation", "registered_users")}, failing
    row = failing[("reconciliation", "registered_users")]
    assert row["status"] == "error" and row["value"] == 1 and "behind the watermark" in row["detail"]
    _assert_alerted(inst, run, "reconciliation", "registered_users")


def test_a_crashed_run_fails_and_alerts_through_the_dag_failure_callback(clean_inboxes):
    inst = clean_inboxes
    history = inst.data_root / "health" / "history"
    moved = history.with_name("history.moved")
    history.rename(moved)
    history.write_text("not a directory: the record task cannot write the history")
    try:
        run = inst.run_monitor()
    finally:
        history.unlink()
        moved.rename(history)
    assert run["state"] == "failed" and run["task_states"]["record"] == "failed", run["task_states"]
    messages = inst.smtp.wait(1, timeout=90)
    assert len(messages) == 1, [m["Subject"] for m in messages]
    text = inst.smtp.text(messages[0])
    assert "DAG run failed: monitor" in text and "record" in text
    assert "/dags/monitor/runs/" in text


def test_the_history_survives_a_full_refresh(installation):
    before = len(installation.history())
    shutil.copy(installation.warehouse, installation.warehouse.with_suffix(".bak"))
    installation.warehouse.unlink()  # harsher than a full refresh: the warehouse is gone
    try:
        assert len(installation.history()) == before > 0
    finally:
        shutil.move(installation.warehouse.with_suffix(".bak"), installation.warehouse)
