""".github/workflows/ci.yml: valid for GitHub Actions, on Debian as root, running what `.ci/run` runs.

No GitHub runner is reachable from here, so the file is checked the way GitHub reads it: against the
workflow schema that check-jsonschema vendors (offline), then for what it must do.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PATH = REPO_ROOT / ".github" / "workflows" / "ci.yml"
WORKFLOW = yaml.safe_load(WORKFLOW_PATH.read_text())
# YAML 1.1 reads the key `on` as the boolean True
TRIGGERS = WORKFLOW.get("on", WORKFLOW.get(True))
[(JOB_ID, JOB)] = WORKFLOW["jobs"].items()
STEPS = JOB["steps"]
COMMANDS = [step.get("run", "").strip() for step in STEPS]


def step_index(predicate) -> int:
    matches = [i for i, step in enumerate(STEPS) if predicate(step)]
    assert matches, "no such step"
    return matches[0]


def test_the_workflow_is_valid_for_github_actions():
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW_PATH)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path):
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW_PATH.read_text().replace("runs-on:", "runs_on:"))
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0


def test_it_runs_on_pushes_to_main_and_on_pull_requests():
    assert TRIGGERS["push"]["branches"] == ["main"]
    assert "pull_request" in TRIGGERS
    assert WORKFLOW["permissions"] == {"contents": "read"}


def test_the_job_runs_in_a_debian_container_as_root():
    assert JOB["runs-on"].startswith("ubuntu-")
    container = JOB["container"]
    assert re.fullmatch(r"debian:(bookworm|12)(-slim)?", container["image"]), container["image"]
    # root, so .ci/setup.sh can apt-get without sudo (the image has none)
    assert "--user root" in container.get("options", "") or "--user" not in container.get("options", "")
    assert 25 <= JOB["timeout-minutes"] <= 90


def test_a_bare_image_gets_what_checkout_and_the_set_up_expect():
    bootstrap = COMMANDS[0]
    assert "apt-get update" in bootstrap and "apt-get install" in bootstrap
    for package in ("git", "make", "python3", "ca-certificates"):
        assert re.search(rf"\b{re.escape(package)}\b", bootstrap), package
    assert step_index(lambda s: s.get("run", "").startswith("apt-get")) < step_index(
        lambda s: s.get("uses", "").startswith("actions/checkout@")
    )


def test_it_runs_make_lint_and_make_test_the_way_ci_run_does():
    checkout = step_index(lambda s: s.get("uses", "").startswith("actions/checkout@"))
    lint = step_index(lambda s: s.get("run", "").strip() == "make lint")
    tests = step_index(lambda s: s.get("run", "").strip() in ("bash .ci/run", ".ci/run", "make test"))
    assert checkout < lint < tests
    # .ci/run is the one command CI runs here: the workflow calls it, and it is `make test`
    ci_run = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec make test$", ci_run, re.MULTILINE)
    assert "bash .ci/run" in COMMANDS
    # the set-up is part of both targets, as on a fresh machine: no step installs the venv by hand
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^lint: setup-dev\b", makefile, re.MULTILINE)
    assert re.search(r"^test: setup-(dev|spark)\b", makefile, re.MULTILINE)
    assert not any("pip install" in command or "uv " in command for command in COMMANDS)


def test_caches_are_keyed_on_what_they_hold():
    cache = STEPS[step_index(lambda s: s.get("uses", "").startswith("actions/cache@"))]
    assert "~/.cache/fitlake" in cache["with"]["path"]  # the Apache Kafka jars
    assert "requirements*.txt" in cache["with"]["key"] and "real_kafka/pom.xml" in cache["with"]["key"]
