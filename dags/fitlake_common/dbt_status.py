"""The status of every dbt node of the running build, as the watcher tasks read it.

While dbt runs, every node it finishes goes into one XCom (`dbt_watchers.STATUS_XCOM_KEY`) that the
watcher tasks read, so each model and its tests keep their own state in the Airflow graph. A node
dbt skipped says which failure upstream of it was the cause, so a skipped watcher tells why.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

from fitlake_common import config

if TYPE_CHECKING:  # dbt_build imports this module
    from fitlake_common.dbt_build import RunPlan

log = logging.getLogger(__name__)

RESULT_STATUS = {"success", "error", "skipped", "pass", "fail", "warn", "runtime error", "no-op"}
FAILED_STATUSES = {"error", "fail", "runtime error"}


class NodeStatusBoard:
    """Collects dbt's per-node results and publishes them as one XCom, at most every `interval` seconds."""

    def __init__(self, publish, interval: float = 1.0):
        self._publish = publish
        self.attempt = uuid.uuid4().hex  # which build a payload belongs to (a cleared task's old file stays)
        # (uid, failed uids) -> why dbt skipped uid; set once the manifest is known (`explain_skips_with`)
        self._explain = None
        self._interval = interval
        self._lock = threading.Lock()
        self._nodes: dict[str, dict] = {}
        self._done = False
        self._skip_all: str | None = None
        self._version = 0
        self._published = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def explain_skips_with(self, explain) -> None:
        self._explain = explain

    def set(self, uid: str, status: str, message: str | None = None, seconds: float | None = None) -> None:
        with self._lock:
            if status == "skipped" and self._explain is not None and not message:
                # dbt skips a node once a failure upstream is known: say which, as the watcher ends now
                failed = {u for u, e in self._nodes.items() if e["status"] in FAILED_STATUSES}
                message = self._explain(uid, failed)
            entry = {"status": status}
            if message:
                entry["message"] = message[:500]
            if seconds is not None:
                entry["seconds"] = round(float(seconds), 3)
            self._nodes[uid] = entry
            self._version += 1

    def skip_all(self, reason: str) -> None:
        """Every node the build would report ends skipped (the watchers' verdict for unreported nodes)."""
        with self._lock:
            self._skip_all = reason
            self._version += 1

    def get(self, uid: str) -> dict | None:
        with self._lock:
            return self._nodes.get(uid)

    def snapshot(self) -> dict:
        with self._lock:
            return self._payload()

    def _payload(self) -> dict:
        payload = {"attempt": self.attempt, "done": self._done, "nodes": dict(self._nodes)}
        if self._skip_all:
            payload["skip_all"] = self._skip_all
        return payload

    def on_dbt_event(self, event) -> None:
        """dbtRunner callback: a node finished (model, test, hook)."""
        if event.info.name != "NodeFinished":
            return
        info = event.data.node_info
        result = event.data.run_result
        status = (result.status or info.node_status or "").lower()
        if status in RESULT_STATUS:
            self.set(info.unique_id, status, result.message or None, result.execution_time)

    def publish(self, force: bool = False) -> None:
        with self._lock:
            if not force and self._version == self._published:
                return
            payload, version = self._payload(), self._version
        self._publish(payload)
        with self._lock:
            self._published = max(self._published, version)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._version += 1
        self.stop()
        self.publish(force=True)

    def start(self) -> NodeStatusBoard:
        self.publish(force=True)

        def loop():
            while not self._stop.wait(self._interval):
                try:
                    self.publish()
                except Exception:  # a failed push must not stop the build; the final push retries
                    log.exception("could not publish the dbt node status; the next push retries")

        self._thread = threading.Thread(target=loop, name="dbt-status-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def mark_unselected(board: NodeStatusBoard, manifest, plan: RunPlan) -> None:
    """Models a selector leaves out, and the tests that need them, are skipped before dbt starts."""
    if not plan.selective:
        return
    selected = set(plan.models or [])
    for uid, node in manifest.nodes.items():
        if node.resource_type == "model" and node.name not in selected:
            board.set(uid, "skipped", f"not selected (select={plan.select})")
        elif node.resource_type == "test":
            parents = {manifest.nodes[p].name for p in node.depends_on.nodes if p in manifest.nodes}
            if not parents <= selected:
                board.set(uid, "skipped", f"a model it tests is not selected (select={plan.select})")


def skip_reason(manifest, uid: str, failed: set[str]) -> str | None:
    """`not rebuilt: upstream failed: <tests or models>` when a failed node is upstream of `uid`."""
    ancestors = _model_ancestors(manifest, uid)
    causes = sorted(f for f in failed if (_tested_model(manifest, f) or f) in ancestors | {uid})
    if not causes:
        return None
    return "not rebuilt: upstream failed: " + ", ".join(c.split(".")[2] for c in causes)


def explain_skips(board: NodeStatusBoard, manifest) -> None:
    """Say, for each node dbt skipped without a reason yet, which failed node upstream of it caused that."""
    nodes = board.snapshot()["nodes"]
    failed = {uid for uid, s in nodes.items() if s["status"] in FAILED_STATUSES}
    for uid, status in nodes.items():
        if failed and status["status"] == "skipped" and not status.get("message"):
            reason = skip_reason(manifest, uid, failed)
            if reason:
                board.set(uid, "skipped", reason)


def _tested_model(manifest, uid: str) -> str | None:
    node = manifest.nodes.get(uid)
    if node is None or node.resource_type != "test":
        return None
    attached = getattr(node, "attached_node", None)
    return attached or (node.depends_on.nodes[0] if len(node.depends_on.nodes) == 1 else None)


def _model_ancestors(manifest, uid: str) -> set[str]:
    start = _tested_model(manifest, uid) or uid
    seen, todo = set(), [start]
    while todo:
        node = manifest.nodes.get(todo.pop())
        for parent in node.depends_on.nodes if node is not None else []:
            if parent.startswith("model.") and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _failures(board: NodeStatusBoard) -> str:
    nodes = board.snapshot()["nodes"]
    failed = [uid.split(".")[2] for uid, s in nodes.items() if s["status"] in FAILED_STATUSES]
    return f"{len(failed)} failed: {', '.join(sorted(failed))}" if failed else "dbt reported an error (see the log)"


def remove_old_status_files(keep_days: float = 7.0) -> None:
    """Status files of runs older than a week: their XComs keep what the UI shows."""
    cutoff = time.time() - keep_days * 86400
    for path in config.DBT_STATUS_DIR.glob("*.json") if config.DBT_STATUS_DIR.is_dir() else []:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
