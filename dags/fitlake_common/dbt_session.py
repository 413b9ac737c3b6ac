"""dbt in the `dbt_build` task's own process: one start-up, one parse, then every dbt command of the run.

A run of transform_dbt starts dbt exactly once, in-process (dbtRunner): one start-up, one parse
(dbt's partial parse, kept between runs in FITLAKE_DBT_TARGET_DIR), one build. Starting dbt per
command would pay its import and parse each time. Running dbt in the task's process also leaves its
named semaphores to that process (`release_named_semaphores`).

Gating: dbt build skips the children of a failed test only when they depend on *every* parent of that
test. For a multi-parent test (a relationships test from A to B), a child of A that does not depend on
B was rebuilt from A's failing rows (measured on dbt-core 1.11). `gated_by_tested_model` adds the missing
edges for the length of the build: a failing error-level test stops everything downstream of the
model it is defined on, as the contract asks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from fitlake_common import config

log = logging.getLogger(__name__)

PARTIAL_PARSE = "partial_parse.msgpack"


class DbtSession:
    """dbt in this process: parsed once (partial parse from the target dir), then invoked with that manifest."""

    def __init__(self, target_dir: Path | None = None):
        from dbt.cli.main import dbtRunner

        self._runner_class = dbtRunner
        self.target_dir = Path(target_dir or config.DBT_TARGET_DIR)
        self.target_dir.mkdir(parents=True, exist_ok=True)
        seed = config.DBT_MANIFEST.parent / PARTIAL_PARSE
        if not (self.target_dir / PARTIAL_PARSE).exists() and seed.exists():
            # `make dbt-manifest` parsed with the DAGs' environment: the first build starts from that parse
            shutil.copy(seed, self.target_dir / PARTIAL_PARSE)
        os.environ.update(config.DBT_ENV)
        started = time.monotonic()
        result = dbtRunner().invoke(["parse", *self.common_args()])
        if not result.success:
            raise RuntimeError(f"dbt could not parse {config.DBT_PROJECT_DIR}: {result.exception or 'see the log'}")
        self.manifest = result.result
        log.info("dbt project parsed in %.1fs (%d nodes)", time.monotonic() - started, len(self.manifest.nodes))

    def common_args(self) -> list[str]:
        return [
            "--project-dir",
            str(config.DBT_PROJECT_DIR),
            "--profiles-dir",
            str(config.DBT_PROFILES_DIR),
            "--target-path",
            str(self.target_dir),
            "--log-path",
            str(self.target_dir.parent / "logs"),
        ]

    def invoke(self, args: list[str], callbacks=None, target_dir: Path | None = None):
        command = [*args, *self.common_args()]
        if target_dir is not None:
            command[command.index("--target-path") + 1] = str(target_dir)
        log.info("dbt %s", " ".join(args))
        return self._runner_class(manifest=self.manifest, callbacks=callbacks or []).invoke(command)

    def models_matching(self, selector: str) -> list[str]:
        result = self.invoke(["ls", "--quiet", "--resource-type", "model", "--output", "name", "--select", selector])
        if not result.success:
            raise ValueError(f"dbt could not resolve the selector {selector!r}: {result.exception or 'see the log'}")
        names = sorted({str(name).strip() for name in result.result or [] if str(name).strip()})
        if not names:
            raise ValueError(f"the selector {selector!r} matches no model; nothing would run")
        return names

    def models_left_out(self) -> set[str]:
        """Unique ids of the models config.DBT_BUILD_EXCLUDE leaves out: the transform never builds them."""
        if not config.DBT_BUILD_EXCLUDE:
            return set()
        args = ["ls", "--quiet", "--resource-type", "model", "--output", "name", "--select", *config.DBT_BUILD_EXCLUDE]
        result = self.invoke(args)
        names = {str(name).strip() for name in (result.result or [])} if result.success else set()
        return {uid for uid, n in self.manifest.nodes.items() if n.resource_type == "model" and n.name in names}


@contextlib.contextmanager
def gated_by_tested_model() -> Iterator[None]:
    """During a build, an error-level test gates every child of the model it is defined on."""
    import networkx as nx
    from dbt.compilation import Linker

    original = Linker.add_test_edges

    def add_test_edges(linker, manifest):
        original(linker, manifest)
        graph = linker.graph
        for test_id in list(graph.nodes):
            test = manifest.nodes.get(test_id)
            if test is None or test.resource_type != "test" or len(test.depends_on.nodes) < 2:
                continue
            if str(test.config.severity).lower() != "error":
                continue
            tested = getattr(test, "attached_node", None)
            if not tested or tested not in graph:
                continue
            for child in list(graph.successors(tested)):
                node = manifest.nodes.get(child)
                if node is None or node.resource_type == "test" or graph.has_edge(test_id, child):
                    continue
                if nx.has_path(graph, child, test_id):  # the test reads the child: it cannot wait for the test
                    continue
                graph.add_edge(test_id, child, edge_type="parent_test")

    Linker.add_test_edges = add_test_edges
    try:
        yield
    finally:
        Linker.add_test_edges = original


def release_named_semaphores() -> None:
    """Run multiprocessing's exit finalizers, which a task process ending in os._exit skips.

    dbt's locks are named semaphores (a "spawn" context); left to the resource tracker they are
    reported at exit as "leaked semaphore objects" (error level, in every build's log).
    """
    import multiprocessing.util

    multiprocessing.util._run_finalizers(0)
