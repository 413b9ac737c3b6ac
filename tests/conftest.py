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

# `make test` runs on two pytest-xdist workers: the Airflow tests, which mostly wait on the scheduler,
# beside the engine and lander tests, which mostly compute. Tests sharing an expensive fixture must run on
# one worker, or each worker would start its own: one group per Airflow installation, and one per file
# for the rest (the Spark session's JVM, module-scoped services). xdist's own `loadgroup` cannot be used:
# on pytest 9 its group marks are lost (it rewrites `item._nodeid`, which pytest 9 no longer reads).
SHARED_FIXTURE_GROUPS = {
    "tests/dags/health/": "airflow-health-installation",
    "tests/dags/test_celery.py": "airflow-shared-installation",
    "tests/dags/test_end_to_end.py": "airflow-shared-installation",
    "tests/dags/test_ui_smoke.py": "airflow-shared-installation",
}
# The longest groups go first, so that neither worker starts one of them when the other is nearly done.
LONGEST_FIRST = ["tests/dbt/test_spark_target.py", "airflow-shared-installation", "tests/integration/test_faults.py"]


def fixture_group(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    return next((group for prefix, group in SHARED_FIXTURE_GROUPS.items() if path.startswith(prefix)), path)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        """xdist's scope scheduling, with the scopes above: a whole group runs on one worker."""

        def _split_scope(self, nodeid: str) -> str:
            return fixture_group(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST (xdist would order scopes by test count)
    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(fixture_group(item.nodeid), len(rank)))  # stable: file order otherwise


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
