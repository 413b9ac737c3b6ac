"""The Airflow UI as a person uses it, in headless Chromium (Playwright, Debian's chromium): log in with the
generated password, submit every DAG's trigger form with its defaults and once with a selector, read the
graph, open the dbt docs; and the docs refuse anyone without a session.

Screenshots land in tests/artifacts/ (git-ignored): the trigger form, the run's graph, the dbt docs.
"""

from __future__ import annotations

import shutil
import time

import pytest

# What each DAG's trigger form sends when submitted as it opens.
DEFAULT_CONF = {
    "land_azure_sql": {"table": "all"},
    "land_kafka": {"topic": "all"},
    "transform_dbt": {"full_refresh": False, "select": None, "as_of_date": None},
}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        binary = shutil.which("chromium")
        assert binary, "Debian's chromium is missing: `make setup-dev` installs it"
        chromium = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, installation):
    """A page logged in through the login form, with the password the installation generated."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(installation.airflow.url + "/")
    page.get_by_label("Username").fill(installation.login.username)
    page.get_by_label("Password").fill(installation.login.password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def open_trigger_form(page, installation, dag_id: str):
    page.goto(f"{installation.airflow.url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def submit(dialog, installation, dag_id: str) -> dict:
    """Click the form's Trigger button; returns the run it created (found through the API)."""
    before = {r["dag_run_id"] for r in installation.api.runs(dag_id)}
    button = dialog.get_by_role("button", name="Trigger")
    assert button.is_enabled(), f"{dag_id}: the Trigger button is disabled"
    button.click()
    deadline = time.monotonic() + 30
    while True:
        new = [r for r in installation.api.runs(dag_id) if r["dag_run_id"] not in before]
        if new:
            return new[0]
        assert time.monotonic() < deadline, f"{dag_id}: submitting the form created no run"
        time.sleep(0.5)


@pytest.mark.parametrize("dag_id", sorted(DEFAULT_CONF))
def test_every_trigger_form_submits_with_its_defaults(page, installation, dag_id, artifacts_dir):
    dialog = open_trigger_form(page, installation, dag_id)
    if dag_id == "transform_dbt":
        page.screenshot(path=str(artifacts_dir / "transform_dbt_trigger_form.png"))
    run = submit(dialog, installation, dag_id)
    assert run["conf"] == DEFAULT_CONF[dag_id]
    installation.api.wait_for_run(dag_id, run["dag_run_id"], timeout=600)


@pytest.fixture(scope="module")
def selected_run(page, installation):
    installation.api.wait_until_idle("transform_dbt", settle=0.5)
    dialog = open_trigger_form(page, installation, "transform_dbt")
    dialog.locator("[name=element_select]").fill("date_lookup")
    dialog.locator("[name=element_as_of_date]").fill("2024-06-15")
    run = submit(dialog, installation, "transform_dbt")
    run = installation.api.wait_for_run("transform_dbt", run["dag_run_id"], timeout=600)
    run["task_states"] = installation.api.task_states("transform_dbt", run["dag_run_id"])
    return run


def test_the_form_sends_a_selector_and_the_run_builds_only_that(selected_run):
    assert selected_run["conf"] == {"full_refresh": False, "select": "date_lookup", "as_of_date": "2024-06-15"}
    states = selected_run["task_states"]
    assert selected_run["state"] == "success", states
    assert states["dbt.date_lookup.run"] == "success" and states["dbt.date_lookup.test"] == "success"
    others = {t: s for t, s in states.items() if t.startswith("dbt.") and ".date_lookup." not in t}
    assert others and set(others.values()) == {"skipped"}, others


def test_the_graph_shows_every_model_and_the_docs_open_in_the_ui(page, installation, selected_run, artifacts_dir):
    url = installation.airflow.url
    page.goto(f"{url}/dags")
    page.evaluate("localStorage.setItem('default_dag_view', JSON.stringify('graph'))")  # graph, not grid
    page.goto(f"{url}/dags/transform_dbt/runs/{selected_run['dag_run_id']}")
    page.get_by_text("docs_generate").first.wait_for()
    expand = page.locator('[aria-label="Expand all task groups"]')
    if expand.count():
        expand.first.click()
    page.get_by_text("date_lookup").first.wait_for()
    time.sleep(2)  # the layout settles
    graph = artifacts_dir / "transform_dbt_graph.png"
    page.screenshot(path=str(graph))
    page.goto(f"{url}/plugin/dbt-docs")
    page.frame_locator("iframe").first.get_by_text("workout_bpm_summary").first.wait_for(timeout=60_000)
    docs = artifacts_dir / "dbt_docs_in_airflow.png"
    page.screenshot(path=str(docs))
    for shot in (graph, docs):
        assert shot.stat().st_size > 20_000, f"{shot} looks empty"


def test_dbt_docs_are_served_only_to_logged_in_users(installation, selected_run):
    api = installation.api
    for name in ("index.html", "manifest.json", "catalog.json"):
        path = f"/fitlake-docs/{name}"
        assert api.call("GET", path)[0] == 401, f"{path} served without a session"
        assert api.call("GET", path, cookie="not-a-jwt")[0] in (401, 403)
        assert api.call("GET", path, token="not-a-jwt")[0] in (401, 403)
        status, body = api.call("GET", path, cookie=api.token)  # the browser's session cookie
        assert status == 200, (path, status, body[:300])
        assert api.call("GET", path, token=api.token)[0] == 200
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


def test_login_is_required_and_wrong_passwords_are_refused(installation):
    api = installation.api
    assert api.call("GET", "/api/v2/dags")[0] == 401
    assert api.call("POST", "/auth/token", {"username": "admin", "password": "admin"})[0] == 401
    assert api.call("POST", "/auth/token", {"username": "admin", "password": "wrong"})[0] == 401
    assert api.call("GET", "/api/v2/dags", token=api.token)[0] == 200
