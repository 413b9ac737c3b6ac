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
EXPECTED_DAGS = {"land_azure_sql", "land_kafka", "transform_dbt"}


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
    dag = report["dags"]["transform_dbt"]
    assert "AssetTriggeredTimetable" in dag["schedule"]
    for entity in (*SQL_TABLES, *KAFKA_TOPICS):
        assert entity in dag["schedule"]
    assert set(dag["params"]) == {"full_refresh", "select", "as_of_date"}
    tasks = dag["tasks"]
    models = {
        n["name"] for n in json.loads(dbt_manifest.read_text())["nodes"].values() if n["resource_type"] == "model"
    }
    assert models, "the manifest has no models"
    for model in models:
        run = tasks[f"dbt.{model}.run"]
        assert run["pool"] == "duckdb_warehouse"
        assert run["trigger_rule"] == "none_failed"
        assert f"dbt.{model}.run" in tasks.get(f"dbt.{model}.test", {"upstream": [f"dbt.{model}.run"]})["upstream"]
    warehouse_tasks = [t for t, spec in tasks.items() if t.startswith("dbt.") or t == "docs_generate"]
    assert all(tasks[t]["pool"] == "duckdb_warehouse" for t in warehouse_tasks)
    assert tasks["plan"]["pool"] != "duckdb_warehouse"
    detached = [t for t in tasks if t.count(".") == 1 and t.endswith("_test")]
    for test in detached:  # multi-parent tests gate the children of their parents
        assert tasks[test]["trigger_rule"] == "all_done"
    assert tasks["docs_generate"]["trigger_rule"] == "none_failed"
    assert any(t.startswith("dbt.") for t in tasks["docs_generate"]["upstream"])
