"""A full refresh that did not finish is finished by the next run, whatever that run asked for.

A full refresh rebuilds bronze with new load times. The incremental silver models read the bronze rows
loaded after their own latest load time, so a silver model that the refresh did not reach (the build was
killed, its worker lost, or a failure upstream skipped it) would read every bronze row again on the next
incremental run, and the append-only models (the parsed `*_events`, `quarantine`) would hold each message
twice. So a full refresh leaves a mark beside the warehouse when it starts and removes it only when it
succeeds; a run that finds the mark is a full refresh of the marked models and its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from fitlake_common.warehouse_records import WarehouseRecord

log = logging.getLogger(__name__)


@dataclass
class UnfinishedFullRefresh(WarehouseRecord):
    kind: ClassVar[str] = "unfinished_full_refresh"

    run_id: str
    models: list[str] | None  # None: every model


def finish_unfinished_refresh(plan) -> UnfinishedFullRefresh | None:
    """Make `plan` (a RunPlan, its selection resolved) a full refresh of what an unfinished one left, and of
    its own models: one dbt invocation cannot refresh some models and build the others incrementally."""
    pending = UnfinishedFullRefresh.load()
    if pending is None:
        return None
    plan.full_refresh = True
    plan.models = None if pending.models is None or plan.models is None else sorted({*plan.models, *pending.models})
    if plan.models is None:
        plan.select = None  # every model: as a run without a selector (its build is recorded)
    log.warning(
        "the full refresh of run %s did not finish (killed, lost or failed): this run is a full refresh of %s, "
        "or the incremental models it did not reach would read the rebuilt bronze rows a second time",
        pending.run_id,
        "every model" if plan.models is None else ", ".join(plan.models),
    )
    return pending
