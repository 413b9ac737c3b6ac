"""An incremental run gives exactly what a full refresh gives on the same data (CONTRACT 4).

Seeded random data sets are landed in 2 to 6 runs, `dbt build` after each; the silver and
gold tables must then hold exactly the rows of one `dbt build --full-refresh` over all the
files (the same messages, with the same partitions and offsets, in one run); doubles compare with a
tolerance, since a mean's last bits depend on the order of its terms.
"""

from __future__ import annotations

import random

import pytest
from dbt_harness import CONTRACT_COLUMNS, Dbt, approx
from random_landing import generate, write


@pytest.mark.parametrize("seed", [7, 2024])
def test_incremental_runs_equal_full_refresh(dbt: Dbt, seed: int) -> None:
    dataset = generate(seed)
    n_batches = random.Random(seed).randint(2, 6)

    write(dataset, dbt.writer, 1, seed)[0]()
    dbt.build("--full-refresh")
    expected = dbt.snapshot()
    # the data set is rich enough for the comparison to mean something
    assert len(expected["silver.workout_bpm"]) > 20
    assert len(expected["gold.gym_summary"]) > 0
    assert len(expected["silver.quarantine"]) >= 6
    assert len(expected["silver.user_profile"]) > 3

    writer = dbt.reset()
    for land in write(dataset, writer, n_batches, seed):
        land()
        dbt.build()
    actual = dbt.snapshot()
    for table in CONTRACT_COLUMNS:
        assert actual[table] == approx(expected[table]), f"{table} differs after {n_batches} incremental runs"
