"""The dbt docs after a build: regenerated only when what they show has changed.

`dbt docs generate` is a second dbt command after the build, with catalog queries on the warehouse.
It runs only when the project's models, docs or columns changed (`docs_fingerprint`), or a relation
is missing from the catalog; otherwise the docs of an earlier build are current and are kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fitlake_common import config

if TYPE_CHECKING:
    from fitlake_common.dbt_session import DbtSession

DOCS_NODE = "docs"  # the key of the docs step in the status payload (the docs_generate watcher)


def docs_fingerprint(manifest) -> str:
    """What the docs site shows of the project: descriptions, columns, docs blocks, lineage, code."""
    parts = [config.DBT_TARGET]  # the catalog (column types, statistics) is the engine's
    for uid, node in sorted({**manifest.nodes, **manifest.sources}.items()):
        columns = {name: (c.description, c.data_type) for name, c in sorted(node.columns.items())}
        depends = sorted(getattr(getattr(node, "depends_on", None), "nodes", None) or [])
        checksum = getattr(getattr(node, "checksum", None), "checksum", None)
        parts.append(json.dumps([uid, node.description, columns, depends, checksum], default=str))
    parts += [f"{uid}:{doc.block_contents}" for uid, doc in sorted(manifest.docs.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def docs_are_current(docs_dir: Path, fingerprint: str, manifest, left_out=set) -> tuple[bool, str]:
    """`left_out()`: models the build never builds (not in the warehouse, so never in the catalog)."""
    state = docs_dir / "fitlake_docs_state.json"
    try:
        recorded = json.loads(state.read_text()).get("fingerprint")
        catalog = json.loads((docs_dir / "catalog.json").read_text())
    except (OSError, ValueError):
        return False, "no docs generated yet"
    if recorded != fingerprint:
        return False, "the project's models, columns or docs changed"
    models = {uid for uid, n in manifest.nodes.items() if n.resource_type == "model"}
    absent = models - set(catalog.get("nodes", {}))
    if absent:
        absent -= left_out()
    if absent:
        return False, f"{len(absent)} relation(s) missing from the catalog"
    return True, "models, columns and docs unchanged since they were generated"


def generate_docs(session: DbtSession, fingerprint: str) -> str:
    docs_dir = config.DBT_DOCS_DIR
    docs_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = session.invoke(["docs", "generate"], target_dir=docs_dir)
    if not result.success:
        raise RuntimeError(f"dbt docs generate failed: {result.exception or 'see the log above'}")
    from ingestion.state import write_json_atomic

    write_json_atomic(docs_dir / "fitlake_docs_state.json", {"fingerprint": fingerprint})
    catalog = json.loads((docs_dir / "catalog.json").read_text())
    return f"regenerated: {len(catalog.get('nodes', {}))} relations in {time.monotonic() - started:.1f}s"
