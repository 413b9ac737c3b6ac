"""Shared wiring for the FitLake DAGs: configuration, Assets, Cosmos config, task bodies.

The DAG files stay thin and import from here. Nothing in this package does I/O at import:
it reads environment variables only; files, brokers and dbt are touched inside task bodies.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The `ingestion` package lives at the repository root. Launchers set PYTHONPATH to it; this
# keeps a hand-started scheduler (DAGS_FOLDER pointed at dags/) working as well.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))
