"""Fixtures for the dbt scenario tests: one Dbt harness per session, reset for every test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbt_harness import Dbt  # noqa: E402


@pytest.fixture(scope="session")
def dbt_session(tmp_path_factory) -> Dbt:
    return Dbt(tmp_path_factory.mktemp("fitlake_dbt"))


@pytest.fixture
def dbt(dbt_session: Dbt) -> Dbt:
    dbt_session.reset()
    return dbt_session
