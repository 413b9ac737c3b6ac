"""Fixtures for the DAG tests: a fresh dbt manifest, an isolated Airflow home, the embedded stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"

for path in (str(DAGS_DIR), str(REPO_ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def dbt_manifest(tmp_path_factory) -> Path:
    """`dbt parse` of the working tree into a scratch target dir (what `make dbt-manifest` does)."""
    target = tmp_path_factory.mktemp("dbt") / "target"
    project = REPO_ROOT / "dbt_project"
    done = subprocess.run(
        [str(VENV_BIN / "dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project),
         "--target-path", str(target)],
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
             "FITLAKE_WAREHOUSE": str(target.parent / "parse.duckdb")},
        capture_output=True, text=True, cwd=project,
    )
    assert done.returncode == 0, f"dbt parse failed:\n{done.stdout}\n{done.stderr}"
    return target / "manifest.json"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
