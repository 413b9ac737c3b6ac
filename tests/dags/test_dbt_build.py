"""The one dbt build of transform_dbt, outside Airflow: what the watchers are told, when a run builds,
and the gate that stops every child of a model whose error-level test fails.

Real dbt (in-process, as the `dbt_build` task runs it) on a temporary warehouse and landing zone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fitlake_common import config, dbt_build, dbt_status, nothing_new
from fitlake_common.dbt_watchers import verdict

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "dbt"))

from golden_scenario import land_run1, land_run2, workout  # noqa: E402
from landing_fixtures import LandingWriter  # noqa: E402

USERS = "model.fitlake.users"
USERS_TESTS = ["test.fitlake.unique_users_user_id.dff2f", "test.fitlake.not_null_users_user_id.fa10a"]
RUN = SimpleNamespace(logical_date=None, run_after=datetime(2024, 6, 15, 12, tzinfo=UTC))  # an asset-triggered run


# --- what a watcher ends as ---------------------------------------------------------------------------


def test_a_watcher_waits_while_the_build_runs():
    assert verdict([USERS], "model users", {"done": False, "nodes": {}}, "running") is None
    assert verdict([USERS], "model users", None, "queued") is None


@pytest.mark.parametrize(
    "statuses,expected",
    [
        ({USERS_TESTS[0]: "pass", USERS_TESTS[1]: "pass"}, "success"),
        ({USERS_TESTS[0]: "warn", USERS_TESTS[1]: "pass"}, "success"),  # warn-level failures do not gate
        ({USERS_TESTS[0]: "fail", USERS_TESTS[1]: "pass"}, "failed"),
        ({USERS_TESTS[0]: "error", USERS_TESTS[1]: "skipped"}, "failed"),
        ({USERS_TESTS[0]: "skipped", USERS_TESTS[1]: "skipped"}, "skipped"),
    ],
)
def test_a_watcher_ends_as_its_nodes_call_for(statuses, expected):
    payload = {"done": False, "nodes": {uid: {"status": s} for uid, s in statuses.items()}}
    result = verdict(USERS_TESTS, "tests of users", payload, "running")
    assert result.state == expected
    assert "unique_users_user_id" in result.message


def test_a_watcher_fails_when_the_build_died_before_reporting_its_node():
    result = verdict([USERS], "model users", {"done": False, "nodes": {}}, "failed")
    assert result.state == "failed" and "dbt_build" in result.message and "users" in result.message
    # a build that finished without the node: dbt left it out (e.g. a test whose parent was not selected)
    assert verdict([USERS], "model users", {"done": True, "nodes": {}}, "success").state == "skipped"


def test_a_build_that_did_not_run_skips_every_watcher_with_its_reason():
    payload = {"done": True, "nodes": {}, "skip_all": "nothing new to build"}
    result = verdict([USERS], "model users", payload, "skipped")
    assert result.state == "skipped" and "nothing new" in result.message


# --- publishing, coalescing, skipping --------------------------------------------------------------------


def test_the_status_board_publishes_changes_and_a_final_done():
    pushed = []
    board = dbt_status.NodeStatusBoard(pushed.append, interval=0.05).start()
    board.set(USERS, "success", seconds=0.5)
    time.sleep(0.3)
    count = len(pushed)
    time.sleep(0.3)
    assert len(pushed) == count, "nothing changed: nothing is pushed again"
    board.finish()
    assert pushed[0] == {"attempt": board.attempt, "done": False, "nodes": {}}
    assert pushed[-1] == {
        "attempt": board.attempt,
        "done": True,
        "nodes": {USERS: {"status": "success", "seconds": 0.5}},
    }


@pytest.mark.parametrize("retry", [False, True])
def test_watchers_read_the_status_file_of_the_current_attempt_only(tmp_path, monkeypatch, retry):
    """The API is asked until the producer runs; once the producer's file is there, its XCom names the
    attempt, and from then on the file is read without the API, unless it goes quiet. A cleared task's old
    file (`retry`) is never taken for the new attempt's."""
    import asyncio

    from fitlake_common import dbt_watchers

    monkeypatch.setattr(config, "DBT_STATUS_DIR", tmp_path)
    calls = []
    poll = dbt_watchers._RunStatusPoll("transform_dbt", "manual__1", "dbt_build")
    state = {"value": "queued"}
    xcom = {"value": None}

    def fetch_state():
        calls.append("state")
        poll.producer_state, poll.state_at = state["value"], time.monotonic()

    monkeypatch.setattr(poll, "_fetch_state", fetch_state)
    monkeypatch.setattr(poll, "_fetch_xcom", lambda: (calls.append("xcom"), xcom["value"])[1])
    path = dbt_watchers.status_file("manual__1")
    if retry:
        path.write_text(json.dumps({"attempt": "old", "done": True, "nodes": {USERS: {"status": "success"}}}))

    def look():
        poll.fetched_at = 0.0
        return asyncio.run(poll.current(max_age=0))

    assert look() == (None, "queued") and calls == ["state"], "before the producer runs, nothing else is read"
    state["value"] = "running"
    assert look() == (None, "running"), "the producer runs but has not published yet: nothing to show"
    assert calls == (["state", "state", "xcom"] if retry else ["state", "state"]), calls
    xcom["value"] = {"attempt": "new", "done": False, "nodes": {}}
    path.write_text(json.dumps({"attempt": "new", "done": False, "nodes": {USERS: {"status": "success"}}}))
    assert look()[0]["nodes"] == {USERS: {"status": "success"}} and poll.attempt == "new"
    calls.clear()
    path.write_text(json.dumps({"attempt": "new", "done": True, "nodes": {USERS: {"status": "success"}}}))
    assert look()[0]["done"] and calls == [], "the file, without the API"
    poll.payload["done"] = False
    os.utime(path, (time.time() - 60, time.time() - 60))  # the producer went quiet
    poll.state_at = 0.0
    look()
    assert calls == ["state"], "a quiet file: the API is asked whether the producer still runs"


def test_the_build_waits_for_landings_in_flight_but_not_forever():
    in_flight = iter([["land_kafka"], ["land_kafka"], []])
    assert nothing_new.wait_for_landings(lambda: next(in_flight), timeout=10, poll=0.05) < 1
    started = time.monotonic()
    waited = nothing_new.wait_for_landings(lambda: ["land_kafka"], timeout=0.3, poll=0.05)
    assert 0.3 <= waited < 2 and time.monotonic() - started < 2


def test_the_landing_fingerprint_follows_committed_files_only(tmp_path):
    writer = LandingWriter(tmp_path)
    before = nothing_new.landing_fingerprint(tmp_path)
    writer.kafka_file("workout", [workout(1, 1, 1, "start", 1700000000)])
    after = nothing_new.landing_fingerprint(tmp_path)
    assert after != before
    (tmp_path / "_staging").mkdir(exist_ok=True)
    (tmp_path / "_staging" / "half-written.parquet").write_bytes(b"x")
    assert nothing_new.landing_fingerprint(tmp_path) == after


# --- real builds ---------------------------------------------------------------------------------------


@pytest.fixture
def installation(tmp_path, monkeypatch):
    """config pointed at a scratch copy of the dbt project, a landing zone and a warehouse."""
    project = tmp_path / "dbt_project"
    shutil.copytree(REPO_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    landing = tmp_path / "landing"
    landing.mkdir()
    warehouse = tmp_path / "warehouse" / "fitlake.duckdb"
    env = {**config.DBT_ENV, "FITLAKE_WAREHOUSE": str(warehouse), "FITLAKE_LANDING_ROOT": str(landing)}
    for name, value in {
        "DBT_PROJECT_DIR": project,
        "DBT_PROFILES_DIR": project,
        "LANDING_ROOT": landing,
        "WAREHOUSE": warehouse,
        "DBT_TARGET_DIR": tmp_path / "dbt" / "target",
        "DBT_DOCS_DIR": tmp_path / "dbt_docs",
        "DBT_ENV": env,
        "TRANSFORM_COALESCE_SECONDS": 1,
    }.items():
        monkeypatch.setattr(config, name, value)
    yield SimpleNamespace(project=project, writer=LandingWriter(landing), warehouse=warehouse)
    _release_warehouse()


def _release_warehouse() -> None:
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    if DuckDBConnectionManager._ENV is not None:
        DuckDBConnectionManager._ENV.close()
    DuckDBConnectionManager.close_all_connections()


def build(params: dict | None = None, run_id: str = "run"):
    """One run of the task body; returns (summary or the NothingNew reason, the last payload pushed)."""
    pushed: list[dict] = []
    try:
        summary = dbt_build.run_dbt_build(
            {"as_of_date": "2024-06-15", **(params or {})}, RUN, pushed.append, run_id=run_id
        )
    except nothing_new.NothingNew as nothing:
        summary = str(nothing)
    finally:
        _release_warehouse()
    return summary, pushed[-1]


def query(warehouse: Path, sql: str):
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()


def statuses(payload: dict, kind: str = "model") -> dict[str, str]:
    return {uid.split(".")[2]: s["status"] for uid, s in payload["nodes"].items() if uid.startswith(kind + ".")}


def test_a_run_builds_then_finds_nothing_new_until_something_lands(installation):
    land_run1(installation.writer)
    summary, payload = build(run_id="first")
    assert summary.built and payload["done"]
    assert set(statuses(payload).values()) == {"success"} and len(statuses(payload)) == 18
    assert payload["nodes"]["docs"]["status"] == "success"  # first build: the docs are generated
    assert (config.DBT_DOCS_DIR / "catalog.json").is_file()

    reason, payload = build(run_id="second")
    assert isinstance(reason, str) and "nothing new since run first" in reason
    assert payload["skip_all"] and payload["done"]

    reason, _ = build({"as_of_date": "2024-06-16"})  # ages change with the as-of date: build again
    assert not isinstance(reason, str)

    land_run2(installation.writer)
    summary, payload = build()
    assert summary.built
    assert payload["nodes"]["docs"]["status"] == "skipped"  # same models, same columns: docs current
    assert "docs current" in payload["nodes"]["docs"]["message"]

    summary, payload = build({"full_refresh": True})  # a full refresh always builds
    assert summary.built and summary.plan["full_refresh"]


def test_a_selection_builds_its_models_and_their_parents_only(installation):
    land_run1(installation.writer)
    summary, payload = build({"select": "gym_summary"})
    models = statuses(payload)
    assert models["gym_summary"] == "success" and models["users"] == "success" and models["gym_logs"] == "success"
    assert models["workout_bpm_summary"] == "skipped" and models["quarantine"] == "skipped"
    assert "not selected" in payload["nodes"]["model.fitlake.workout_bpm_summary"]["message"]
    assert not nothing_new.BuildRecord.path().exists(), "a selective build does not count as a full build"


def duplicated_messages(warehouse: Path) -> int:
    """Messages held more than once by the append-only parsed-event models."""
    return sum(
        query(warehouse, f"select count(*) - count(distinct (kafka_partition, kafka_offset)) from silver.{model}")[0][0]
        for model in ("workout_events", "bpm_events", "user_info_events")
    )


def test_a_full_refresh_that_did_not_finish_is_finished_by_the_next_run(installation):
    """A full refresh rebuilt bronze (new load times) and was killed before silver: the mark it left makes
    the next run a full refresh, so the append-only silver models do not read the messages again."""
    from fitlake_common.dbt_session import DbtSession
    from fitlake_common.unfinished_refresh import UnfinishedFullRefresh

    def killed_full_refresh(mark: bool) -> None:
        """What a full refresh killed after bronze did: bronze rebuilt, the record gone, its mark left."""
        result = DbtSession().invoke(["run", "--select", "kafka_multiplex_bz", "--full-refresh"])
        _release_warehouse()
        assert result.success
        nothing_new.BuildRecord.forget()
        if mark:
            UnfinishedFullRefresh(run_id="killed", models=None).save()

    land_run1(installation.writer)
    build(run_id="first")
    # without the mark, the next incremental run reads every rebuilt bronze message again
    killed_full_refresh(mark=False)
    with pytest.raises(RuntimeError, match="unique_combination_of_columns_workout_events"):  # the duplicates test
        build(run_id="unguarded")
    assert duplicated_messages(installation.warehouse) > 0, "the hazard this guards against did not show"
    build({"full_refresh": True}, run_id="repair")
    assert duplicated_messages(installation.warehouse) == 0

    killed_full_refresh(mark=True)
    land_run2(installation.writer)
    summary, _ = build(run_id="after")
    assert summary.plan["full_refresh"] and summary.plan["models"] is None, summary.plan
    assert not UnfinishedFullRefresh.path().exists(), "a successful full refresh removes the mark"
    assert duplicated_messages(installation.warehouse) == 0

    # a full refresh of one model rebuilds the models that read it too (else they would read it twice)
    summary, _ = build({"select": "kafka_multiplex_bz", "full_refresh": True}, run_id="partial")
    assert {"workout_events", "quarantine", "workout_bpm_summary"} <= set(summary.plan["models"])
    summary, _ = build({"select": "date_lookup", "full_refresh": True}, run_id="calendar")  # no load times
    assert summary.plan["models"] == ["date_lookup"]
    build({"as_of_date": "2024-06-16"}, run_id="next")
    assert duplicated_messages(installation.warehouse) == 0


def test_a_failing_multi_parent_test_stops_every_child_of_the_model_it_tests(installation):
    """relationships(workouts.user_id -> users), error level: its parents are workouts and users.

    dbt alone would rebuild completed_workouts (a child of workouts that does not depend on users)
    from the failing rows (measured on dbt-core 1.11); the build's gate skips it, and everything below it.
    """
    yml = installation.project / "models" / "silver" / "workouts.yml"
    spec = yaml.safe_load(yml.read_text())
    [model] = spec["models"]
    column = next(c for c in model["columns"] if c["name"] == "user_id")
    column["data_tests"].append(
        {"relationships": {"arguments": {"to": "ref('users')", "field": "user_id"}, "config": {"severity": "error"}}}
    )
    yml.write_text(yaml.safe_dump(spec, sort_keys=False))
    land_run1(installation.writer)
    build()  # a clean first build
    gold_before = query(installation.warehouse, "select * from gold.workout_bpm_summary order by all")
    installation.writer.kafka_file(  # a workout of a user who never registered
        "workout",
        [workout(99999, 1, 1, "start", 1700050000), workout(99999, 1, 1, "stop", 1700050600)],
    )
    land_run2(installation.writer)  # and new data for the unrelated branches

    pushed: list[dict] = []
    with pytest.raises(RuntimeError, match="relationships_workouts_user_id"):
        dbt_build.run_dbt_build({"as_of_date": "2024-06-15"}, RUN, pushed.append)
    _release_warehouse()
    payload = pushed[-1]
    assert payload["done"]
    tests = {uid.split(".")[2]: s for uid, s in payload["nodes"].items() if uid.startswith("test.")}
    assert tests["relationships_workouts_user_id__user_id__ref_users_"]["status"] == "fail"
    models = statuses(payload)
    for gated in ("completed_workouts", "workout_bpm", "workout_bpm_summary", "gym_summary"):
        assert models[gated] == "skipped", (gated, models[gated])
        assert (
            "upstream failed: relationships_workouts_user_id" in payload["nodes"][f"model.fitlake.{gated}"]["message"]
        )
    for unrelated in ("heart_rate", "user_profile", "user_bins", "users", "gym_logs"):
        assert models[unrelated] == "success", unrelated
    assert query(installation.warehouse, "select count(*) from silver.completed_workouts where user_id = 99999") == [
        (0,)
    ]
    assert query(installation.warehouse, "select * from gold.workout_bpm_summary order by all") == gold_before
    assert payload["nodes"]["docs"]["status"] == "skipped"


LEAK_PROBE = """
import os, sys
sys.path[:0] = [{dags!r}, {repo!r}]
from fitlake_common import dbt_session
dbt_session.DbtSession()  # dbt's manifest holds a lock: a named semaphore
if sys.argv[1] == "release":
    dbt_session.release_named_semaphores()
os._exit(0)  # as Airflow's task runner ends a task process: no atexit handlers
"""


@pytest.mark.parametrize("release,leaks", [("release", False), ("keep", True)])
def test_a_build_process_leaves_no_named_semaphores(installation, release, leaks):
    """The task process ends with os._exit; without `release_named_semaphores` the resource tracker reports
    dbt's locks as leaked (an error-level line in every build's log)."""
    import subprocess

    script = LEAK_PROBE.format(dags=str(REPO_ROOT / "dags"), repo=str(REPO_ROOT))
    env = {**os.environ, **config.DBT_ENV, "FITLAKE_DBT_TARGET_DIR": str(config.DBT_TARGET_DIR),
           "FITLAKE_DBT_PROJECT_DIR": str(config.DBT_PROJECT_DIR)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, release], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("leaked semaphore" in done.stderr) is leaks, done.stderr[-2000:]


def test_dbt_is_made_ready_while_landings_are_in_flight(installation, caplog):
    """A landing still running when the build starts: dbt's import and parse overlap the wait for it."""
    import logging

    land_run1(installation.writer)
    answers = iter([["land_kafka"], ["land_kafka"], ["land_kafka"]])
    with caplog.at_level(logging.INFO, logger="fitlake_common.dbt_session"):
        summary = dbt_build.run_dbt_build(
            {"as_of_date": "2024-06-15"}, RUN, lambda payload: None, landings_in_flight=lambda: next(answers, [])
        )
    _release_warehouse()
    assert summary.built
    parsed = [r for r in caplog.records if r.getMessage().startswith("dbt project parsed")]
    assert [r.threadName.split("_")[0] for r in parsed] == ["dbt-parse"], "dbt was parsed beside the wait"
