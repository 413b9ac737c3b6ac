"""Health history, freshness parsing, alert messages, the snapshot swap and the API's validation (no services)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dags"))

from fitlake_common import health, snapshot  # noqa: E402
from fitlake_common.alerts import health_message  # noqa: E402
from fitlake_common.health import CheckResult  # noqa: E402


def _sources_json(status="pass", loaded="2026-01-01T10:00:00+00:00", ago=3600.0):
    return {
        "results": [
            {
                "unique_id": "source.fitlake.landing.bpm",
                "status": status,
                "max_loaded_at": loaded,
                "max_loaded_at_time_ago_in_s": ago,
                "criteria": {
                    "warn_after": {"count": 12, "period": "hour"},
                    "error_after": {"count": 1, "period": "day"},
                },
            }
        ]
    }


def test_freshness_results_carry_age_and_thresholds_in_hours():
    [row] = health.freshness_results(_sources_json("warn", ago=13 * 3600))
    assert (row.check_name, row.entity, row.status, row.value, row.threshold) == ("freshness", "bpm", "warn", 13, 24)
    assert "13.0 h ago" in row.detail and "warn after 12 h, error after 24 h" in row.detail


def test_freshness_of_an_entity_that_never_landed_is_an_error():
    [row] = health.freshness_results(_sources_json("error", loaded="0001-01-01T00:00:00+00:00", ago=6e10))
    assert row.status == "error" and row.value is None and "no file of this entity has landed yet" in row.detail


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status 'fail'"):
        CheckResult("volume", "bpm", "fail")


def test_history_appends_per_run_and_a_retry_replaces_its_own_file(tmp_path):
    first = [CheckResult("volume", "bpm", "pass", 0.01, 0.1), CheckResult("freshness", "bpm", "error", 30, 24)]
    health.write_history(first, "run-1", datetime(2026, 1, 1, tzinfo=UTC), history_dir=tmp_path)
    health.write_history(first, "run-1", datetime(2026, 1, 1, 0, 1, tzinfo=UTC), history_dir=tmp_path)  # retry
    health.write_history([CheckResult("freshness", "bpm", "pass", 1, 24)], "run-2", history_dir=tmp_path)
    with duckdb.connect() as con:
        rows = con.execute(f"select run_id, check_name, status from {health.history_sql(tmp_path)}").fetchall()
        latest = con.execute(f"select check_name, status from {health.latest_sql(tmp_path)} order by 1").fetchall()
    assert sorted(rows) == [
        ("run-1", "freshness", "error"),
        ("run-1", "volume", "pass"),
        ("run-2", "freshness", "pass"),
    ]
    assert latest == [("freshness", "pass"), ("volume", "pass")]
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_empty_history_is_an_empty_typed_relation(tmp_path):
    with duckdb.connect() as con:
        assert con.execute(f"select count(*), max(checked_at) from {health.history_sql(tmp_path)}").fetchall() == [
            (0, None)
        ]


def test_health_alert_names_check_entity_and_links_the_run():
    failing = [
        {"check_name": "volume", "entity": "bpm", "status": "warn", "value": -0.5, "threshold": 0.1, "detail": "d1"},
        {
            "check_name": "freshness",
            "entity": "gym_logins",
            "status": "error",
            "value": 30.0,
            "threshold": 24.0,
            "detail": "<script>",
        },
    ]
    subject, body, text = health_message(failing, "http://x/dags/monitor/runs/r1", "http://x/fitlake-dashboard/")
    assert subject.startswith("[FitLake] health error: 2 check(s) failing (volume bpm, freshness gym_logins)")
    assert "http://x/dags/monitor/runs/r1" in body and "http://x/dags/monitor/runs/r1" in text
    assert "&lt;script&gt;" in body and "<script>" not in body  # details are escaped
    assert "WARN volume / bpm: d1" in text


def test_a_check_that_keeps_failing_alerts_once_until_it_recovers_worsens_or_the_repeat_interval_ends(tmp_path):
    stale = CheckResult("freshness", "bpm", "warn", 13, 24)
    start = datetime(2026, 1, 1, 10)

    def hourly_run(hour: int, result: CheckResult) -> str | None:
        run_id = f"run-{hour}"
        previous = health.previous_state(run_id, tmp_path).get((result.check_name, result.entity))
        now = start + timedelta(hours=hour)
        reason = health.alert_reason(result, previous, now, repeat_hours=24)
        alerted = frozenset({(result.check_name, result.entity)} if reason else ())
        health.write_history([result], run_id, now, history_dir=tmp_path, alerted=alerted)
        return reason

    assert hourly_run(0, CheckResult("freshness", "bpm", "pass", 1, 24)) is None
    assert hourly_run(1, stale) == "new"
    assert [hourly_run(h, stale) for h in range(2, 25)] == [None] * 23  # recorded every hour, alerted once
    assert hourly_run(25, stale) == "still failing"  # 24 h after the alert: a reminder
    assert hourly_run(26, CheckResult("freshness", "bpm", "error", 25, 24)) == "worse"
    assert hourly_run(27, CheckResult("freshness", "bpm", "pass", 0.1, 24)) is None
    assert hourly_run(28, stale) == "new"  # failing again after it recovered
    with duckdb.connect() as con:
        alerted = con.execute(
            f"select run_id from {health.history_sql(tmp_path)} where alerted order by checked_at"
        ).fetchall()
    assert alerted == [("run-1",), ("run-25",), ("run-26",), ("run-28",)]


def test_a_retried_run_is_judged_against_the_runs_before_it_not_against_itself(tmp_path):
    failing = CheckResult("duplicates", "users", "error", 1, 0)
    health.write_history([failing], "run-1", datetime(2026, 1, 1), history_dir=tmp_path, alerted=frozenset())
    assert health.previous_state("run-1", tmp_path) == {}
    assert health.alert_reason(failing, None, datetime(2026, 1, 1)) == "new"


def test_repeat_hours_zero_alerts_on_every_run():
    previous = {"status": "warn", "alerted_at": datetime(2026, 1, 1, 10)}
    result = CheckResult("volume", "bpm", "warn", -0.5, 0.1)
    assert health.alert_reason(result, previous, datetime(2026, 1, 1, 11), repeat_hours=0) == "still failing"
    assert health.alert_reason(result, previous, datetime(2026, 1, 1, 11), repeat_hours=24) is None


def test_a_health_alert_lists_the_checks_still_failing_that_it_does_not_repeat():
    new = {"check_name": "volume", "entity": "bpm", "status": "warn", "value": -1.0, "threshold": 0.8,
           "detail": "d", "reason": "new"}  # fmt: skip
    old = {"check_name": "freshness", "entity": "gym_logins", "status": "error", "value": 30.0, "threshold": 24.0,
           "detail": "d"}  # fmt: skip
    subject, body, text = health_message([new], "http://x/run", "http://x/dash", [old])
    assert subject == "[FitLake] health warn: 1 check(s) failing (volume bpm)"
    assert "WARN volume / bpm (new): d" in text and "Still failing, alerted before: freshness gym_logins" in text
    assert "Still failing, alerted before: freshness gym_logins" in body


def _warehouse(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute(
            """
            create schema gold; create schema silver;
            create table gold.gym_summary as select date '2026-01-02' as date, 1 as gym, 'aa' as mac_address,
                7 as workout_id, 1 as session_id, 30.5 as minutes_in_gym, 20.25 as minutes_exercising, 10 as user_id,
                timestamp '2026-01-02 08:00' as login;
            create table gold.workout_bpm_summary as select 7 as workout_id, 1 as session_id, 10 as user_id,
                '25-35' as age, 'F' as gender, 'c' as city, 's' as state, 60.0 as min_bpm, 120.5 as avg_bpm,
                170.0 as max_bpm, 100 as num_recordings;
            create table silver.completed_workouts as select 10 as user_id, 7 as workout_id, 1 as session_id,
                timestamp '2026-01-02 08:10' as start_time, timestamp '2026-01-02 08:30' as end_time;
            create table silver.user_bins as select 10 as user_id, '25-35' as age, 'F' as gender;
            create table silver.users as select 10 as user_id, 'aa' as mac_address,
                timestamp '2026-01-01 00:00' as registration_timestamp;
            create table silver.gym_logs as select 'aa' as mac_address, 1 as gym,
                timestamp '2026-01-02 08:00' as login, timestamp '2026-01-02 08:30:30' as logout;
            create table silver.quarantine as select timestamp '2026-01-02 09:00' as load_time,
                'malformed json' as reason, 'kafka_multiplex_bz' as source_table, 'bpm' as topic;
            """
        )
    return path


def test_snapshot_swap_is_atomic_and_keeps_the_last_few(tmp_path):
    warehouse = _warehouse(tmp_path / "w.duckdb")
    root = tmp_path / "snap"
    assert snapshot.current_dir(root) is None
    metas = [snapshot.export(warehouse, root) for _ in range(snapshot.KEEP + 2)]
    assert snapshot.current_dir(root) == Path(metas[-1]["path"])
    assert len(list(root.glob("snap-*"))) == snapshot.KEEP and not list(root.glob(".tmp-*"))
    assert metas[-1]["rows"] == {
        "gym_summary": 1,
        "workout_bpm_summary": 1,
        "workouts": 1,
        "members": 1,
        "visits": 1,
        "quarantine": 1,
    }
    with duckdb.connect() as con:
        [(minutes,)] = con.execute(
            f"select minutes_in_gym from '{snapshot.current_dir(root)}/visits.parquet'"
        ).fetchall()
    assert float(minutes) == 30.5


def test_snapshot_of_a_missing_warehouse_says_what_to_do(tmp_path):
    with pytest.raises(snapshot.SnapshotError, match="run the transform_dbt DAG first"):
        snapshot.export(tmp_path / "none.duckdb", tmp_path / "snap")


@pytest.fixture
def client(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from fitlake_common import api

    root = tmp_path / "snap"
    snapshot.export(_warehouse(tmp_path / "w.duckdb"), root)
    monkeypatch.setattr(snapshot, "SNAPSHOT_ROOT", root)
    monkeypatch.setattr(health, "HISTORY_DIR", tmp_path / "history")
    return TestClient(api.create_app())


def test_api_pages_and_filters(client):
    page = client.get("/v1/gym_summary", params={"gym": 1, "from": "2026-01-02", "to": "2026-01-02"}).json()
    assert page["total"] == 1 and page["next_offset"] is None and page["items"][0]["minutes_exercising"] == 20.25
    assert page["items"][0]["login"] == "2026-01-02T08:00:00Z"  # UTC, with its offset (RFC 3339 date-time)
    assert client.get("/v1/gym_summary", params={"gym": 2}).json()["total"] == 0
    assert client.get("/v1/kpis").json() == {
        "members": 1,
        "visits": 1,
        "workouts": 1,
        "mean_bpm": 120.5,
        "quarantined": 1,
    }
    assert client.get("/v1/health/latest").json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"gym": "x"}, "gym"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "2026-01-03", "to": "2026-01-02"}, "from"),
    ],
)
def test_api_rejects_bad_parameters_with_a_422_naming_them(client, params, name):
    response = client.get("/v1/gym_summary", params=params)
    assert response.status_code == 422
    assert any(name in entry["loc"] for entry in response.json()["detail"])


def test_api_without_snapshot_answers_503(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from fitlake_common import api

    monkeypatch.setattr(snapshot, "SNAPSHOT_ROOT", tmp_path / "none")
    response = TestClient(api.create_app()).get("/v1/gym_summary")
    assert response.status_code == 503 and "run transform_dbt" in response.json()["detail"]
