"""The installation of the health tests: alert connections to a local SMTP server and webhook, the monitor
DAG on, and data of its own (support.py). Not the shared `installation`: test_end_to_end leaves that one
with a failing quality gate on purpose, so no later transform there succeeds (and none would run the
monitor). Package scope: it stops after the last test of this package."""

from __future__ import annotations

import pytest

from health.support import AlertInboxes, prepare


@pytest.fixture(scope="package")
def health_installation(new_installation):
    inboxes = AlertInboxes()
    inst = new_installation("fitlake-health", inboxes.env())
    try:
        yield prepare(inst.start(), inboxes)
    finally:
        inst.stop()
        inboxes.stop()
