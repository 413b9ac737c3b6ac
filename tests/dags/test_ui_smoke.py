"""UI smoke test against a real `airflow standalone`: login through the API, docs behind auth,
trigger transform_dbt with parameters over REST API v2, wait for success, Chromium screenshots.

Screenshots land in tests/artifacts/ (git-ignored): the run's graph and the dbt docs in the UI.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from chromium import Chromium, chromium_binary

RUN_CONF = {"select": "date_lookup", "as_of_date": "2024-06-15", "full_refresh": True}


class Api:
    def __init__(self, base: str):
        self.base = base
        self.token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body=None,
        token: str | None = None,
        cookie: str | None = None,
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode()
        )
        request.add_header("Accept", accept)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if cookie:
            request.add_header("Cookie", f"_token={cookie}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method: str, path: str, body=None) -> dict:
        status, data = self.call(method, path, body, token=self.token)
        assert status < 300, f"{method} {path}: {status} {data[:500]!r}"
        return json.loads(data)

    def login(self, username: str, password: str) -> str:
        status, data = self.call("POST", "/auth/token", {"username": username, "password": password})
        assert status == 201, (status, data)
        self.token = json.loads(data)["access_token"]
        return self.token


@pytest.fixture(scope="module")
def airflow(pipeline):
    from launchers.standalone import Standalone

    # Asset events of the earlier `dags test` runs would trigger transform_dbt as soon as it is
    # unpaused; this test wants exactly one run, its own.
    pipeline.metadata("delete from asset_dag_run_queue")
    server = Standalone(pipeline.env, log_path=pipeline.root / "standalone.log")
    server.start(timeout=240)
    yield server
    code = server.stop()
    assert code is not None


@pytest.fixture(scope="module")
def api(airflow, pipeline):
    client = Api(airflow.url)
    client.login("admin", pipeline.env["_FITLAKE_AIRFLOW_PASSWORD"])
    return client


def test_login_is_required_and_wrong_passwords_are_refused(api):
    assert api.call("GET", "/api/v2/dags")[0] == 401
    assert api.call("POST", "/auth/token", {"username": "admin", "password": "wrong"})[0] == 401
    assert api.call("GET", "/api/v2/dags", token=api.token)[0] == 200


@pytest.fixture(scope="module")
def triggered_run(api):
    deadline = time.monotonic() + 120
    while api.call("GET", "/api/v2/dags/transform_dbt", token=api.token)[0] != 200:
        assert time.monotonic() < deadline, "transform_dbt was not parsed by the dag-processor"
        time.sleep(2)
    api.json("PATCH", "/api/v2/dags/transform_dbt", {"is_paused": False})
    run = api.json("POST", "/api/v2/dags/transform_dbt/dagRuns", {"logical_date": None, "conf": RUN_CONF})
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 300
    while True:
        run = api.json("GET", f"/api/v2/dags/transform_dbt/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        time.sleep(2)
    tasks = api.json("GET", f"/api/v2/dags/transform_dbt/dagRuns/{run_id}/taskInstances?limit=500")
    run["task_states"] = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
    return run


def test_transform_dag_triggered_with_params_succeeds(triggered_run):
    states = triggered_run["task_states"]
    assert triggered_run["state"] == "success", states
    assert triggered_run["conf"] == RUN_CONF
    assert states["plan"] == "success"
    assert states["dbt.date_lookup.run"] == "success" and states["dbt.date_lookup.test"] == "success"
    assert states["docs_generate"] == "success"
    others = {t: s for t, s in states.items() if t.startswith("dbt.") and ".date_lookup." not in t}
    assert others and set(others.values()) == {"skipped"}, others


def test_params_reach_the_dbt_command(api, triggered_run):
    run_id = triggered_run["dag_run_id"]
    path = f"/api/v2/dags/transform_dbt/dagRuns/{run_id}/taskInstances/dbt.date_lookup.run/logs/1"
    status, body = api.call("GET", path + "?full_content=true", token=api.token)
    assert status == 200
    log = body.decode()
    assert "--full-refresh" in log
    assert "as_of_date" in log and "2024-06-15" in log


def test_dbt_docs_are_served_only_to_logged_in_users(api, triggered_run):
    for name in ("index.html", "manifest.json", "catalog.json"):
        path = f"/fitlake-docs/{name}"
        assert api.call("GET", path)[0] == 401, f"{path} served without a session"
        assert api.call("GET", path, cookie="not-a-jwt")[0] in (401, 403)
        assert api.call("GET", path, token="not-a-jwt")[0] in (401, 403)
        status, body = api.call("GET", path, cookie=api.token)  # the browser's session cookie
        assert status == 200, (path, status, body[:300])
        status, body = api.call("GET", path, token=api.token)
        assert status == 200
    status, body = api.call("GET", "/fitlake-docs/index.html", accept="text/html")
    assert status == 401 and b"/auth/login" in body
    assert api.call("GET", "/fitlake-docs/../airflow.cfg", token=api.token)[0] == 404
    assert api.call("GET", "/fitlake-docs/profiles.yml", token=api.token)[0] == 404
    # the Cosmos plugin is installed but has no docs to hand out anonymously
    assert api.call("GET", "/cosmos/fitlake/dbt_docs_index.html")[0] == 404
    plugins = api.json("GET", "/api/v2/plugins")["plugins"]
    views = [v for p in plugins for v in p.get("external_views", [])]
    assert any(v["href"].endswith("/fitlake-docs/index.html") for v in views), views
    assert all("/cosmos/" not in v["href"] for v in views)


@pytest.mark.skipif(chromium_binary() is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_screenshots_of_the_graph_and_the_docs(airflow, api, triggered_run, artifacts_dir):
    browser = Chromium()
    try:
        browser.set_cookie(airflow.url, "_token", api.token)
        run_id = triggered_run["dag_run_id"]
        browser.open(f"{airflow.url}/dags", wait_for_text="transform_dbt", settle=0)
        browser.evaluate("localStorage.setItem('default_dag_view', JSON.stringify('graph'))")  # graph, not grid
        text = browser.open(f"{airflow.url}/dags/transform_dbt/runs/{run_id}", wait_for_text="docs_generate", settle=1)
        browser.evaluate("document.querySelector('[aria-label=\"Expand all task groups\"]')?.click()")
        browser.open_wait("users", settle=4)  # the per-model groups are drawn
        assert "transform_dbt" in text
        graph = browser.screenshot(artifacts_dir / "transform_dbt_graph.png")
        text = browser.open(f"{airflow.url}/plugin/dbt-docs", wait_for_text="workout_bpm_summary", timeout=60)
        docs = browser.screenshot(artifacts_dir / "dbt_docs_in_airflow.png")
    finally:
        browser.close()
    for shot in (graph, docs):
        assert shot.stat().st_size > 20_000, f"{shot} looks empty"
