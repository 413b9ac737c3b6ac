"""A lander that a native library crashes (an ODBC driver's SIGSEGV) leaves its Python stack in the log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# `python -m ingestion` whose command crashes in native code, as psqlODBC 13 can after the server died
CRASHING_CLI = """
import ctypes, runpy, sys
import ingestion.cli

def land_in_a_crashing_driver():
    ctypes.string_at(0)  # reads address 0: SIGSEGV

ingestion.cli.main = land_in_a_crashing_driver
sys.argv = ["python -m ingestion", "land", "sql"]
runpy.run_module("ingestion", run_name="__main__", alter_sys=True)
"""


def test_a_native_crash_prints_the_python_stack():
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_CLI], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == -11, (result.returncode, result.stderr[-2000:])
    assert "Fatal Python error: Segmentation fault" in result.stderr, result.stderr[-2000:]
    assert "land_in_a_crashing_driver" in result.stderr, result.stderr[-2000:]
