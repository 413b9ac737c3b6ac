"""`python -m ingestion stack up|status|down` starts, reports and stops the embedded services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingestion.stack import _alive

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(data_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITLAKE_")}
    env.update({"FITLAKE_DATA_ROOT": str(data_root), "PYTHONPATH": str(REPO_ROOT)})
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_stack_up_status_down_leaves_nothing_running(tmp_path):
    up = run_cli(tmp_path, "stack", "up")
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "stack" / "kafka.json").read_text())
    try:
        assert "created user_info, workout, bpm" in up.stdout
        assert (tmp_path / "source" / "azure_sql_standin.sqlite").exists()
        again = run_cli(tmp_path, "stack", "up")  # idempotent: the running broker is reused
        assert "already running" in again.stdout and json.loads((tmp_path / "stack" / "kafka.json").read_text())
        status = run_cli(tmp_path, "stack", "status")
        assert f"embedded {state['bootstrap']} pid {state['pid']}: up" in status.stdout
        # The landers find the embedded broker without any configuration.
        landed = run_cli(tmp_path, "land", "kafka", "--topic", "bpm")
        assert landed.returncode == 0 and "kafka:bpm: 0 rows" in landed.stdout, landed.stderr
    finally:
        down = run_cli(tmp_path, "stack", "down")
    assert down.returncode == 0 and f"stopped embedded broker pid {state['pid']}" in down.stdout
    assert not _alive(state["pid"])
    assert "not running" in run_cli(tmp_path, "stack", "status").stdout
    assert "not running" in run_cli(tmp_path, "stack", "down").stdout
