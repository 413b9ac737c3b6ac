"""Run-time decisions of the DAGs, without Airflow: as-of date, a selection's upstream models, Param choice."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from fitlake_common.dbt_runtime import resolve_as_of_date
from fitlake_common.landing import chosen


@pytest.mark.parametrize(
    "override,logical,run_after,expected",
    [
        ("2024-06-15", datetime(2030, 1, 1, tzinfo=UTC), None, "2024-06-15"),
        (None, datetime(2024, 2, 29, 23, 59, tzinfo=UTC), None, "2024-02-29"),
        ("", None, datetime(2025, 1, 2, 0, 0, tzinfo=UTC), "2025-01-02"),  # asset-triggered: no logical date
    ],
)
def test_as_of_date(override, logical, run_after, expected):
    run = SimpleNamespace(logical_date=logical, run_after=run_after)
    assert resolve_as_of_date(override, run) == expected


def test_as_of_date_must_be_a_date():
    with pytest.raises(ValueError):
        resolve_as_of_date("15/06/2024", SimpleNamespace(logical_date=None, run_after=None))


@pytest.mark.parametrize(
    "value,entity,expected",
    [
        ("all", "bpm", True),
        (None, "bpm", True),
        ("", "bpm", True),
        ("bpm", "bpm", True),
        ("workout", "bpm", False),
        (["bpm", "workout"], "bpm", True),
        (["workout"], "bpm", False),
    ],
)
def test_landing_param_choice(value, entity, expected):
    assert chosen(value, entity) is expected


def test_a_selection_always_includes_its_upstream_models():
    from fitlake_common import config
    from fitlake_common.dbt_runtime import with_upstream_models

    # the manifest `make dbt-manifest` builds (make test does it first)
    assert with_upstream_models(["date_lookup"], config.DBT_MANIFEST) == ["date_lookup"]
    quarantine = with_upstream_models(["quarantine"], config.DBT_MANIFEST)
    for parent in ("bpm_events", "user_info_events", "workout_events", "kafka_multiplex_bz", "gym_logins_bz"):
        assert parent in quarantine
    gold = with_upstream_models(["gym_summary"], config.DBT_MANIFEST)
    assert {"gym_summary", "gym_logs", "users", "workouts", "gym_logins_bz", "registered_users_bz"} <= set(gold)
    assert "workout_bpm_summary" not in gold and "quarantine" not in gold


def test_below_a_model_every_model_that_reads_it():
    from fitlake_common import config
    from fitlake_common.dbt_runtime import with_downstream_models

    below = with_downstream_models(["kafka_multiplex_bz"], config.DBT_MANIFEST)
    for child in ("workout_events", "bpm_events", "user_info_events", "quarantine", "workout_bpm_summary"):
        assert child in below
    assert "gym_logins_bz" not in below and "registered_users_bz" not in below
    gold = with_downstream_models(["workout_bpm_summary"], config.DBT_MANIFEST)
    assert {m for m in gold if not m.startswith("health_")} == {"workout_bpm_summary"}  # the monitor's read gold
