"""`make lint` stays clean: ruff (rules and formatting) on the Python, sqlfluff on the dbt models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON_PATHS = ["ingestion", "dags", "launchers", "tests"]


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_ruff_rules_and_formatting() -> None:
    for command in (["check"], ["format", "--check"]):
        result = _run([sys.executable, "-m", "ruff", *command, *PYTHON_PATHS], REPO)
        assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"


def test_sqlfluff_on_dbt_models() -> None:
    sqlfluff = Path(sys.executable).with_name("sqlfluff")
    # linting compiles the models with the dbt templater; it needs no data, so no warehouse file
    env = dict(os.environ, FITLAKE_WAREHOUSE=":memory:")
    result = _run([str(sqlfluff), "lint", "models"], REPO / "dbt_project", env)
    assert result.returncode == 0, f"sqlfluff lint:\n{result.stdout}{result.stderr}"
