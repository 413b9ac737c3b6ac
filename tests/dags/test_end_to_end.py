"""End to end through the real Airflow scheduler on the embedded stack: a cycle, the Params, a quality gate.

The recorded data set tests/data/replay (3 users, 3 gym visits, one workout with a redelivered stop,
5 heart-rate messages of which one is malformed and one non-positive) is replayed into the SQLite
stand-in and the embedded broker. Both landing DAGs are triggered together, as their schedules do at
the top of the hour; their Asset events schedule transform_dbt, which builds once; gold must hold
exactly the hand-computed rows.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import contract_tables

AS_OF = "2024-06-15"

EXPECTED_WORKOUT_BPM_SUMMARY = [
    # workout_id, session_id, user_id, age, gender, city, state, min, avg, max, num_recordings
    (7, 1, 20001, "25-35", "F", "Boston", "MA", 95.5, 115.58, 150.0, 3),
]
EXPECTED_GYM_SUMMARY = [
    # date, gym, mac_address, workout_id, session_id, minutes_in_gym, minutes_exercising
    (date(2023, 11, 15), 2, "0a:1b:2c:3d:4e:5f", 7, 1, Decimal("75.01"), Decimal("30.00")),
]
GOLD_SQL = (
    "select workout_id, session_id, user_id, age, gender, city, state, min_bpm, round(avg_bpm, 2), max_bpm, "
    "num_recordings from gold.workout_bpm_summary order by all"
)


@pytest.fixture(scope="module")
def cycle(first_cycle):
    return first_cycle.cycle


def landing_log(installation, run) -> str:
    return "\n".join(installation.api.task_log(run.dag_id, run.run_id, t.task_id) for t in run.tasks)


def test_both_landing_dags_land_everything_and_publish_their_assets(installation, cycle):
    assert [r.state for r in cycle.landings] == ["success", "success"]
    log = "\n".join(landing_log(installation, run) for run in cycle.landings)
    for expected in (
        "landed sql:registered_users: 3 rows",
        "landed sql:gym_logins: 3 rows",
        "landed kafka:user_info: 3 rows",
        "landed kafka:workout: 3 rows",
        "landed kafka:bpm: 5 rows",
    ):
        assert expected in log
    assert "offsets=" in log and "watermark=" in log
    events = installation.api.json("GET", "/api/v2/assets/events?limit=100")["asset_events"]
    uris = sorted(e["uri"] for e in events)
    for entity in ("sql/registered_users", "sql/gym_logins", "kafka/user_info", "kafka/workout", "kafka/bpm"):
        assert uris.count(f"fitlake://landing/{entity}") == 1, uris
    bpm = next(e for e in events if e["uri"] == "fitlake://landing/kafka/bpm")
    assert bpm["extra"]["rows"] == 5 and bpm["extra"]["source"] == "kafka"


def test_one_cycle_builds_once(installation, cycle):
    """Landing both sources starts one build: any later transform of the cycle finds nothing new."""
    assert cycle.transforms, "the landings scheduled no transform"
    built = [r for r in cycle.transforms if r.built]
    assert len(built) == 1, [(r.run_id, r.task("dbt_build").state) for r in cycle.transforms]
    [build] = built
    assert build.state == "success" and set(t.state for t in build.tasks) <= {"success", "skipped"}
    for later in cycle.transforms[1:]:
        assert later.state == "success" and later.task("dbt_build").state == "skipped"
        log = installation.api.task_log("transform_dbt", later.run_id, "dbt_build")
        assert "nothing new since run" in log
    assert installation.query("select count(*) from silver.users") == [(3,)]
    assert installation.query("select count(*), count(*) filter (where valid) from silver.heart_rate") == [(4, 3)]
    assert installation.query("select count(*) from silver.quarantine") == [(1,)]
    # the build published the gold Asset (the monitor and the dashboard snapshot follow it)
    events = installation.api.json("GET", "/api/v2/assets/events?limit=100")["asset_events"]
    assert [e["uri"] for e in events].count("fitlake://warehouse/gold") == 1


# Lines a healthy cycle may log at warning level or above, and why nobody needs to act on them.
EXPECTED_WARNINGS: dict[str, str] = {}


def warnings_in_task_logs(installation, runs) -> list[str]:
    lines = []
    for run in runs:
        folder = installation.home / "logs" / f"dag_id={run.dag_id}" / f"run_id={run.run_id}"
        for path in sorted(folder.rglob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if str(record.get("level", "")).lower() in ("warning", "error", "critical"):
                    lines.append(f"{path.relative_to(folder)}: {record.get('logger')}: {record.get('event')}")
    return lines


def warnings_in_component_logs(installation, cycle) -> list[str]:
    """Scheduler, triggerer, DAG processor and API server lines at warning level or above during the cycle."""
    window = (cycle.started.strftime("%Y-%m-%dT%H:%M:%S"), cycle.end.strftime("%Y-%m-%dT%H:%M:%S.999999"))
    lines = []
    for line in (installation.root / "standalone.log").read_text(errors="replace").splitlines():
        if "[warning" not in line and "[error" not in line and "[critical" not in line:
            continue
        stamp = line.split("| ", 1)[-1][:26]
        if window[0] <= stamp <= window[1]:
            lines.append(line)
    return lines


def test_a_healthy_cycle_logs_no_warning_nobody_needs(installation, cycle):
    unexpected = [
        line
        for line in warnings_in_task_logs(installation, [*cycle.landings, *cycle.transforms])
        + warnings_in_component_logs(installation, cycle)
        if not any(pattern in line for pattern in EXPECTED_WARNINGS)
    ]
    assert not unexpected, "\n".join(unexpected[:40])


@pytest.fixture(scope="module")
def as_of_run(installation, cycle):
    return installation.transform({"as_of_date": AS_OF})


def test_the_as_of_date_param_rebuilds_gold_as_the_contract_says(installation, as_of_run):
    states = as_of_run["task_states"]
    assert as_of_run["state"] == "success", states
    assert states["dbt_build"] == "success" and states["dbt.user_bins.run"] == "success"
    log = installation.api.task_log("transform_dbt", as_of_run["dag_run_id"], "dbt_build")
    assert f"as_of_date={AS_OF}" in log and f'"as_of_date": "{AS_OF}"' in log
    assert installation.query(GOLD_SQL) == EXPECTED_WORKOUT_BPM_SUMMARY
    assert (
        installation.query(
            "select date, gym, mac_address, workout_id, session_id, minutes_in_gym, minutes_exercising "
            "from gold.gym_summary order by all"
        )
        == EXPECTED_GYM_SUMMARY
    )


def test_docs_are_current_after_the_build(installation, as_of_run):
    for name in ("index.html", "manifest.json", "catalog.json"):
        assert (installation.docs_dir / name).is_file()
    catalog = json.loads((installation.docs_dir / "catalog.json").read_text())
    assert "model.fitlake.workout_bpm_summary" in catalog["nodes"]
    # the first build generated them; this one found models and columns unchanged and left them
    assert as_of_run["task_states"]["docs_generate"] == "skipped"
    log = installation.api.task_log("transform_dbt", as_of_run["dag_run_id"], "docs_generate")
    assert "docs current" in log


def test_a_selector_builds_its_models_and_their_parents(installation, as_of_run):
    run = installation.transform({"select": "date_lookup", "as_of_date": AS_OF, "full_refresh": True})
    states = run["task_states"]
    assert run["state"] == "success", states
    assert states["dbt.date_lookup.run"] == "success" and states["dbt.date_lookup.test"] == "success"
    others = {t: s for t, s in states.items() if t.startswith("dbt.") and ".date_lookup." not in t}
    assert others and set(others.values()) == {"skipped"}, others
    log = installation.api.task_log("transform_dbt", run["dag_run_id"], "dbt_build")
    assert "--full-refresh" in log and "--select date_lookup" in log


def process_holding(path: Path):
    """The process that has `path` open (dbt, inside the dbt_build task), or None."""
    import psutil

    for process in psutil.process_iter(["pid"]):
        try:
            if any(f.path == str(path) for f in process.open_files()):
                return process
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return None


def test_a_killed_build_fails_visibly_and_the_rerun_gives_the_same_tables(installation, as_of_run):
    """SIGKILL the dbt process in the middle of a full refresh: the run fails and says where; the next run
    finds the warehouse free (no lock error) and ends with the tables an uninterrupted run gives."""
    reference = contract_tables(installation)
    api = installation.api
    run_id = api.trigger("transform_dbt", {"as_of_date": AS_OF, "full_refresh": True})
    deadline = time.monotonic() + 300
    killed = None
    while killed is None:
        assert time.monotonic() < deadline, "the build never got under way"
        status = api.xcom("transform_dbt", run_id, "dbt_build", "dbt_node_status") or {}
        assert not status.get("done"), "the build finished before it could be killed: the data set is too small"
        if len(status.get("nodes", {})) >= 8:
            dbt = process_holding(installation.warehouse)
            if dbt is not None:
                os.kill(dbt.pid, signal.SIGKILL)
                killed = dbt.pid
        time.sleep(0.05)
    run = api.wait_for_run("transform_dbt", run_id, timeout=300)
    states = api.task_states("transform_dbt", run_id)
    assert run["state"] == "failed" and states["dbt_build"] == "failed", states
    unreported = [t for t, s in states.items() if s == "failed" and t.startswith("dbt.")]
    assert unreported, "the watchers of the nodes dbt never finished must fail"
    log = api.task_log("transform_dbt", run_id, unreported[0])
    assert "ended (failed) before dbt reported" in log and "Clear that task" in log
    assert any(s == "success" for t, s in states.items() if t.startswith("dbt.")), "nodes done before the kill"

    rerun = installation.transform({"as_of_date": AS_OF})
    assert rerun["state"] == "success", rerun["task_states"]
    log = api.task_log("transform_dbt", rerun["dag_run_id"], "dbt_build")
    assert "Could not set lock" not in log and "Conflicting lock" not in log
    assert "did not finish" in log, "the rerun must finish the killed full refresh, not build incrementally"
    assert process_holding(installation.warehouse) is None, "nothing keeps the warehouse open after a run"
    assert contract_tables(installation) == reference
    for model in ("workout_events", "bpm_events", "user_info_events"):  # append-only: each message once
        sql = f"select count(*) - count(distinct (kafka_partition, kafka_offset)) from silver.{model}"
        assert installation.query(sql) == [(0,)], model


def test_a_quality_gate_stops_downstream_gold_and_lets_unrelated_branches_build(installation, as_of_run, tmp_path):
    """A second member registers with a MAC address already taken: `unique_users_mac_address` (error) fails.

    In the same cycle new data arrives for unrelated branches (a workout with heart rates for user 20002).
    Expected: the users tests' task fails, the models downstream of users (workout_bpm, gym_summary and
    workout_bpm_summary) are not rebuilt and show it (skipped), gold keeps its rows, the branches that do
    not depend on users (workouts, completed_workouts, heart_rate, user_profile, user_bins) build.
    """
    (tmp_path / "registered_users.csv").write_text(
        "user_id,device_id,mac_address,registration_timestamp\n20004,300020,0a:1b:2c:3d:4e:5f,1700100000\n"
    )
    messages = [
        ("workout", "20002", {"user_id": 20002, "workout_id": 8, "timestamp": 1700051500, "action": "start",
                              "session_id": 2}),
        ("workout", "20002", {"user_id": 20002, "workout_id": 8, "timestamp": 1700052000, "action": "stop",
                              "session_id": 2}),
        ("bpm", "300018", {"device_id": 300018, "time": 1700051600, "heartrate": 120.0}),
    ]  # fmt: skip
    (tmp_path / "more.jsonl").write_text(
        "\n".join(
            json.dumps({"key": key, "value": json.dumps(value), "topic": topic, "partition": 0, "offset": i,
                        "timestamp": 1700052000})
            for i, (topic, key, value) in enumerate(messages)
        )
    )  # fmt: skip
    gold_before = installation.query("select * from gold.workout_bpm_summary order by all")
    installation.replay(tmp_path / "registered_users.csv", tmp_path / "more.jsonl")
    cycle = installation.cycle()
    assert [r.state for r in cycle.landings] == ["success", "success"]
    run = cycle.transforms[0]
    assert run.state == "failed", "the run must fail visibly"
    states = {t.task_id: t.state for t in run.tasks}
    assert states["dbt_build"] == "failed"
    assert states["dbt.users.run"] == "success"
    assert states["dbt.users.test"] == "failed"
    assert "unique_users_mac_address" in installation.api.task_log("transform_dbt", run.run_id, "dbt.users.test")
    for blocked in ("dbt.workout_bpm.run", "dbt.gym_summary.run", "dbt.workout_bpm_summary.run"):
        assert states[blocked] == "skipped", (blocked, states[blocked])
        log = installation.api.task_log("transform_dbt", run.run_id, blocked)
        assert "upstream failed: unique_users_mac_address" in log
    assert states["docs_generate"] == "skipped"
    for rebuilt in (
        "dbt.workouts.run",
        "dbt.completed_workouts.run",
        "dbt.completed_workouts.test",
        "dbt.heart_rate.run",
        "dbt.user_profile.run",
        "dbt.user_bins.run",
        "dbt.user_bins.test",
    ):
        assert states[rebuilt] == "success", (rebuilt, states[rebuilt])
    assert "unique_users_mac_address" in installation.api.task_log("transform_dbt", run.run_id, "dbt_build")

    # unrelated branches carry the new data ...
    assert installation.query("select workout_id from silver.completed_workouts order by 1") == [(7,), (8,)]
    assert installation.query("select count(*) from silver.heart_rate where device_id = 300018") == [(1,)]
    # ... gold was not rebuilt from silver that failed its tests: exactly the rows it had
    assert installation.query("select * from gold.workout_bpm_summary order by all") == gold_before
    assert len(installation.query("select * from gold.gym_summary")) == len(EXPECTED_GYM_SUMMARY)
