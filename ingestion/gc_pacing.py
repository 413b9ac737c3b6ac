"""Garbage-collector pacing for the landers' batch loops."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def batches_die_young(batch_objects: int) -> Iterator[None]:
    """While a loop holds batches of ``batch_objects`` tracked objects, let reference counting free them.

    Kafka messages and pyodbc rows are tracked by the cyclic garbage collector. At the default
    young-generation threshold (700 allocations) every batch of 10,000-20,000 triggered collections
    that promoted the whole batch to the older generations, and the full collections that followed
    walked every object in the process again and again: a quarter to a third of a landing's CPU.
    Above a few batches, each batch is freed by reference counting before a collection runs. The
    loops make no reference cycles; if anything else does, its cycles are still collected once five
    batches' worth of objects accumulate. The previous thresholds come back afterwards.
    """
    saved = gc.get_threshold()
    gc.set_threshold(max(5 * batch_objects, saved[0]), *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)
