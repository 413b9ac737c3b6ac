"""Shared fixtures: real services started on demand, scoped to the tests that need them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ingestion.config import load_settings  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_environment():
    """No test leaks environment variables into the next (subprocesses inherit them)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def embedded_kafka(tmp_path_factory):
    """The embedded Tansu broker, as `python -m ingestion stack up` starts it."""
    from ingestion.stack import start_broker, stop_process

    broker = start_broker(tmp_path_factory.mktemp("tansu"))
    yield broker.bootstrap
    stop_process(broker.pid)


@pytest.fixture(scope="session")
def real_kafka(tmp_path_factory):
    """Apache Kafka 4.x in KRaft mode, from Apache's own jars (cached between runs)."""
    from tests.support.real_kafka import start_real_kafka

    with start_real_kafka(tmp_path_factory.mktemp("kraft")) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session", params=["tansu", "apache-kafka"])
def kafka_bootstrap(request):
    """Every test that takes this runs against both brokers."""
    return request.getfixturevalue("embedded_kafka" if request.param == "tansu" else "real_kafka")


@pytest.fixture(scope="session")
def postgres_odbc():
    from tests.support.postgres import throwaway_postgres

    with throwaway_postgres() as connection_string:
        yield connection_string


@pytest.fixture
def make_settings(tmp_path):
    """Settings for an isolated data root; keyword arguments override environment variables."""

    def factory(**env):
        base = {"FITLAKE_DATA_ROOT": str(tmp_path / "data"), "FITLAKE_CONNECT_RETRIES": "2"}
        base.update({k: str(v) for k, v in env.items()})
        return load_settings(base)

    return factory
