"""Launchers of a local FitLake installation: `make demo`, `make airflow`, `make bench-airflow` and tests/dags.

They start and stop Airflow on this machine (an Airflow home, the metadata DB, `airflow standalone`),
build the dbt manifest and report on the warehouse. No DAG imports them; the DAG processor never sees
this package. They read the DAG-side settings from `dags/fitlake_common`, so that folder is put on the
import path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"

for _path in (str(DAGS_DIR), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
