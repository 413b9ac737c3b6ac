"""Quality gates (CONTRACT 6) and documentation/lineage."""

from __future__ import annotations

import json
import sys

from dbt_harness import REPO, Dbt
from golden_scenario import MAC1, land_run1, land_run2


def _status(result, name: str) -> str:
    statuses = {r.node.name: str(r.status) for r in result.result}
    return statuses[name]


def test_error_level_failure_fails_the_build_and_skips_gold(dbt: Dbt) -> None:
    land_run1(dbt.writer)
    dbt.build()
    gold_before = dbt.snapshot(["gold.workout_bpm_summary", "gold.gym_summary"], all_columns=True)

    # a second member registered with a mac address already taken breaks users.mac_address
    # uniqueness (error level): visits could no longer be attributed to one member
    dbt.writer.sql_batch(
        "registered_users",
        [
            dict(
                user_id=20009,
                device_id=300099,
                mac_address=MAC1,
                registration_timestamp=1700000900,
                modified_at=1700000900,
            ),
        ],
    )
    land_run2(dbt.writer)  # new data that would change gold (the workout of 20001 completes)
    result = dbt.build(expect_success=False)

    assert not result.success
    assert _status(result, "unique_users_mac_address") == "fail"
    for downstream in ("workout_bpm", "workout_bpm_summary", "gym_summary"):
        assert _status(result, downstream) == "skipped", downstream
    # upstream of the failure and unrelated models still ran
    assert _status(result, "heart_rate") == "success"
    assert dbt.snapshot(["gold.workout_bpm_summary", "gold.gym_summary"], all_columns=True) == gold_before
    # the failing record is visible in silver, the completed workout did not reach gold
    assert dbt.query("select count(*) from silver.users where mac_address = ?".replace("?", f"'{MAC1}'")) == [(2,)]
    assert [r[:3] for r in dbt.rows("gold.workout_bpm_summary")] == [(2, 200, 20002)]


def test_docs_generate_and_lineage_bronze_silver_gold(dbt: Dbt) -> None:
    land_run1(dbt.writer)
    dbt.build()
    result = dbt.invoke("docs", "generate")
    assert result.success
    manifest = json.loads((dbt.target / "manifest.json").read_text())
    catalog = json.loads((dbt.target / "catalog.json").read_text())
    parents = manifest["parent_map"]

    def upstream(node: str) -> set[str]:
        seen, todo = set(), [node]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    assert "model.fitlake.workout_bpm" in parents["model.fitlake.workout_bpm_summary"]
    assert "model.fitlake.heart_rate" in parents["model.fitlake.workout_bpm"]
    assert "model.fitlake.bpm_events" in parents["model.fitlake.heart_rate"]
    assert "model.fitlake.kafka_multiplex_bz" in parents["model.fitlake.bpm_events"]
    assert "source.fitlake.landing.kafka" in parents["model.fitlake.kafka_multiplex_bz"]
    assert {
        "source.fitlake.landing.registered_users",
        "source.fitlake.landing.gym_logins",
        "source.fitlake.landing.kafka",
    } <= upstream("model.fitlake.gym_summary")
    layers = {n["name"]: n["schema"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {layers[m] for m in ("registered_users_bz", "gym_logins_bz", "kafka_multiplex_bz", "date_lookup")} == {
        "bronze"
    }
    assert {
        layers[m]
        for m in (
            "users",
            "gym_logs",
            "user_profile",
            "workouts",
            "heart_rate",
            "user_bins",
            "completed_workouts",
            "workout_bpm",
            "quarantine",
            "user_info_events",
            "workout_events",
            "bpm_events",
        )
    } == {"silver"}
    assert {layers[m] for m in ("workout_bpm_summary", "gym_summary")} == {"gold"}
    # every model and column is described
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            assert node["description"].strip(), node["name"]
            assert "one row per" in node["description"].lower() or "grain" in node["description"].lower(), node["name"]
            for column in node["columns"].values():
                assert column["description"].strip(), (node["name"], column["name"])
    # the YAML documents exactly the columns the warehouse has
    for unique_id, node in manifest["nodes"].items():
        if node["resource_type"] == "model":
            documented = {c.lower() for c in node["columns"]}
            actual = {c.lower() for c in catalog["nodes"][unique_id]["columns"]}
            assert documented == actual, (node["name"], actual ^ documented)


def test_unit_tests_run_in_ci_and_production_builds_leave_them_out(dbt: Dbt, monkeypatch) -> None:
    land_run1(dbt.writer)
    ci = dbt.build()
    unit_tests = [r for r in ci.result if r.node.resource_type == "unit_test"]
    assert len(unit_tests) >= 5
    assert {str(r.status) for r in unit_tests} == {"pass"}

    # dbt's own settings from the environment every production dbt invocation gets (Cosmos tasks, docs)
    sys.path.insert(0, str(REPO / "dags"))
    from fitlake_common import config

    for name, value in config.DBT_ENV.items():
        if name.startswith("DBT_"):
            monkeypatch.setenv(name, value)
    production = dbt.build()
    kinds = {r.node.resource_type for r in production.result}
    assert "unit_test" not in kinds
    assert {"model", "test"} <= kinds  # the data tests stay the quality gate
