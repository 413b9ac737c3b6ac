"""The DAG bag imports cleanly, parsing never runs dbt, and every DAG carries its metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fitlake_common.assets import KAFKA_TOPICS, SQL_TABLES

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
EXPECTED_DAGS = {"land_azure_sql", "land_kafka", "transform_dbt", "monitor"}


@pytest.fixture(scope="module")
def report(dbt_manifest, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    out = home / "report.json"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "FITLAKE_DBT_MANIFEST": str(dbt_manifest),
        "FITLAKE_DATA_ROOT": str(home / "data"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "dags"), str(REPO_ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "dagbag_report.py"), env["AIRFLOW__CORE__DAGS_FOLDER"], str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_dag_bag_imports_without_errors(report):
    assert report["import_errors"] == {}
    assert set(report["dags"]) == EXPECTED_DAGS


def test_one_dag_per_file(report):
    files = [Path(d["fileloc"]).stem for d in report["dags"].values()]
    assert sorted(files) == sorted(EXPECTED_DAGS)


def test_parsing_never_runs_dbt(report):
    assert report["dbt_runner_calls"] == []
    dbt_commands = [c for c in report["subprocesses"] if any("dbt" in Path(part).name for part in c[:2])]
    assert dbt_commands == [], f"DAG parsing started dbt: {dbt_commands}"
    assert report["subprocesses"] == []
    assert report["cosmos_load_method"] == "DBT_MANIFEST"
    assert report["cosmos_test_behavior"] == "AFTER_EACH"
    assert report["seconds"] < 30


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_metadata(report, dag_id):
    dag = report["dags"][dag_id]
    assert "fitlake" in dag["tags"] and len(dag["tags"]) >= 2
    assert dag["owner"] and dag["owner"] != "airflow"
    assert len(dag["doc_md"]) > 200 and dag["doc_md"].lstrip().startswith("###")
    assert dag["max_active_runs"] == 1
    assert dag["catchup"] is False
    assert dag["on_failure_callback"] == ["fitlake_common.alerts.on_dag_run_failure"], "a failed run alerts"


@pytest.mark.parametrize(
    "dag_id,entities,param", [("land_azure_sql", SQL_TABLES, "table"), ("land_kafka", KAFKA_TOPICS, "topic")]
)
def test_landing_dags(report, dag_id, entities, param):
    dag = report["dags"][dag_id]
    assert set(dag["tasks"]) == {f"land_{e}" for e in entities}
    source = "sql" if dag_id == "land_azure_sql" else "kafka"
    for entity in entities:
        task = dag["tasks"][f"land_{entity}"]
        assert task["retries"] >= 2 and task["retry_exponential_backoff"]
        assert task["outlets"] == [f"fitlake://landing/{source}/{entity}"]
    assert dag["params"][param]["schema"]["enum"] == ["all", *entities]
    assert "CronTriggerTimetable" in dag["schedule"] or "CronDataIntervalTimetable" in dag["schedule"]


def test_landing_assets_match_the_ingestion_package():
    from ingestion.config import KAFKA_TOPICS as ingestion_topics
    from ingestion.source_tables import SOURCE_TABLES

    assert tuple(SOURCE_TABLES) == SQL_TABLES
    assert ingestion_topics == KAFKA_TOPICS


def test_transform_dag(report, dbt_manifest):
    """One producer (the build) in the warehouse pool; a watcher per model, per model's tests and per
    multi-parent test, which never take the pool; every model and test of the manifest is watched."""
    dag = report["dags"]["transform_dbt"]
    assert "AssetTriggeredTimetable" in dag["schedule"]
    for entity in (*SQL_TABLES, *KAFKA_TOPICS):
        assert entity in dag["schedule"]
    assert set(dag["params"]) == {"full_refresh", "select", "as_of_date"}
    tasks = dag["tasks"]
    nodes = json.loads(dbt_manifest.read_text())["nodes"]
    models = {n["name"] for n in nodes.values() if n["resource_type"] == "model" and "health" not in n["tags"]}
    assert models, "the manifest has no models"

    producer = tasks["dbt_build"]
    assert producer["pool"] == "duckdb_warehouse" and producer["retries"] == 0
    assert producer["outlets"] == ["fitlake://warehouse/gold"]
    assert producer["upstream"] == [] and not any("dbt_build" in t["upstream"] for t in tasks.values()), (
        "the build is a leaf of the graph: its failure is the run's"
    )
    watchers = {t: spec for t, spec in tasks.items() if t != "dbt_build"}
    assert {spec["operator"] for spec in watchers.values()} == {"DbtNodeWatcher"}
    assert all(spec["pool"] != "duckdb_warehouse" for spec in watchers.values())
    assert all(spec["trigger_rule"] == "always" and spec["retries"] == 0 for spec in watchers.values())
    assert all(spec["start_from_trigger"] for spec in watchers.values())
    for model in models:
        assert f"dbt.{model}.run" in tasks
        assert f"dbt.{model}.run" in tasks.get(f"dbt.{model}.test", {"upstream": [f"dbt.{model}.run"]})["upstream"]
    watched = {uid for spec in watchers.values() for uid in spec["watched"]}
    # the health checks (tag health) are left out of the build (FITLAKE_DBT_BUILD_EXCLUDE): only the monitor runs them
    health = {uid for uid, n in nodes.items() if "health" in n["tags"]}
    health |= {uid for uid, n in nodes.items() if set(n.get("depends_on", {}).get("nodes", [])) & health}
    built = {uid for uid, n in nodes.items() if n["resource_type"] in ("model", "test")} - health
    assert health and built <= watched
    assert not health & watched, "the health checks are rendered in the transform"
    assert not any(t.startswith("dbt.") and "on-run" in t for t in tasks), "project hooks run inside the build"
    detached = [t for t in tasks if t.count(".") == 1 and t.endswith("_test")]
    assert detached, "the project has multi-parent tests"
    # drawn before the children of the model they test (relationships_user_bins... gates workout_bpm_summary)
    assert (
        "dbt.relationships_user_bins_user_id__user_id__ref_user_profile__test"
        in (tasks["dbt.workout_bpm_summary.run"]["upstream"])
    )
    assert tasks["docs_generate"]["watched"] == ["docs"]
    assert any(t.startswith("dbt.") for t in tasks["docs_generate"]["upstream"])


def test_transform_dag_params_submit_with_their_defaults(report):
    """The trigger form marks a Param required unless its type admits null: only full_refresh is required,
    and it has a default, so the form submits as it opens."""
    params = report["dags"]["transform_dbt"]["params"]
    assert params["full_refresh"]["value"] is False
    for name in ("select", "as_of_date"):
        assert params[name]["value"] is None and "null" in params[name]["schema"]["type"], params[name]


def test_monitor_dag(report):
    """Hourly and after every successful transform; only the dbt checks and the snapshot take the warehouse pool."""
    dag = report["dags"]["monitor"]
    assert "fitlake://warehouse/gold" in dag["schedule"]
    tasks = dag["tasks"]
    assert set(tasks) == {"warehouse_checks", "source_checks", "record", "alert", "refresh_snapshot", "dashboard"}
    assert {t for t, spec in tasks.items() if spec["pool"] == "duckdb_warehouse"} == {
        "warehouse_checks",
        "refresh_snapshot",
    }
    assert tasks["record"]["upstream"] == ["source_checks", "warehouse_checks"]
    assert tasks["alert"]["upstream"] == ["record"]
    assert tasks["refresh_snapshot"]["upstream"] == ["warehouse_checks"]
    assert tasks["dashboard"]["upstream"] == ["record", "refresh_snapshot"]
    assert tasks["dashboard"]["trigger_rule"] == "none_failed"  # after a skipped snapshot too
    assert dag["params"]["refresh_snapshot"]["value"] is False
