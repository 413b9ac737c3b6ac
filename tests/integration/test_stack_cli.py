"""`python -m ingestion stack up|status|down` starts, reports and stops the embedded services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingestion.errors import SourceUnreachable
from ingestion.stack import _alive, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(data_root: Path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITLAKE_")}
    env.update({"FITLAKE_DATA_ROOT": str(data_root), "PYTHONPATH": str(REPO_ROOT), **env_overrides})
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
        assert status.returncode == 0, status.stderr
        # The landers find the embedded broker without any configuration.
        landed = run_cli(tmp_path, "land", "kafka", "--topic", "bpm")
        assert landed.returncode == 0 and "kafka:bpm: 0 rows" in landed.stdout, landed.stderr
    finally:
        down = run_cli(tmp_path, "stack", "down")
    assert down.returncode == 0 and f"stopped embedded broker pid {state['pid']}" in down.stdout
    assert not _alive(state["pid"])
    status = run_cli(tmp_path, "stack", "status")
    assert "not running" in status.stdout
    assert status.returncode == SourceUnreachable.exit_code and "error: the Kafka broker is down" in status.stderr
    assert "not running" in run_cli(tmp_path, "stack", "down").stdout


def test_stack_status_fails_when_an_external_broker_does_not_answer(tmp_path):
    status = run_cli(tmp_path, "stack", "status", FITLAKE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    assert "external 127.0.0.1:" in status.stdout and "DOWN (no answer)" in status.stdout
    assert status.returncode == SourceUnreachable.exit_code, status


def test_stack_status_succeeds_when_an_external_broker_answers(tmp_path, embedded_kafka):
    status = run_cli(tmp_path, "stack", "status", FITLAKE_KAFKA_BOOTSTRAP=embedded_kafka)
    assert status.returncode == 0 and f"external {embedded_kafka}: up" in status.stdout, status
