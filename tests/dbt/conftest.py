"""Fixtures for the dbt scenario tests: one Dbt harness per session, reset for every test; the
Spark tests add one SparkDbt on the same landing root (one JVM for the whole session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbt_harness import Dbt, SparkDbt, stop_spark  # noqa: E402


@pytest.fixture(scope="session")
def dbt_session(tmp_path_factory) -> Dbt:
    return Dbt(tmp_path_factory.mktemp("fitlake_dbt"))


@pytest.fixture
def dbt(dbt_session: Dbt) -> Dbt:
    dbt_session.reset()
    return dbt_session


@pytest.fixture(scope="session")
def spark_dbt_session(tmp_path_factory, dbt_session: Dbt):
    harness = SparkDbt(tmp_path_factory.mktemp("fitlake_spark"), dbt_session)
    yield harness
    stop_spark()


@pytest.fixture
def spark_dbt(dbt: Dbt, spark_dbt_session: SparkDbt) -> SparkDbt:
    """The spark target, nothing built yet, on the (empty) landing root of `dbt`."""
    spark_dbt_session.reset()
    return spark_dbt_session
