"""The dashboard and the JSON API in a real Airflow, behind its login: served from the snapshot the monitor
exported after the transform, the figures on the page equal to SQL over the warehouse, headless Chromium
(Playwright, Debian's chromium) screenshots in tests/artifacts/, and a schemathesis run against the
API's own OpenAPI schema.

The installation is `health_installation` (tests/dags/health_support.py): 8 simulated days, built by a
cycle whose transform ran the monitor, which exported the snapshot and built the page.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from test_ui_smoke import CHROMIUM_FLAGS

from health.support import history

AGE_OF = "coalesce((select b.age from silver.user_bins as b where b.user_id = {}), 'no profile')"
GYM_OF = (
    "(select min(s.gym) from gold.gym_summary as s where s.user_id = w.user_id and s.workout_id = w.workout_id "
    "and s.session_id = w.session_id)"
)


@pytest.fixture(scope="module")
def inst(health_installation):
    inst = health_installation
    run = inst.first_monitor_run
    assert run["state"] == "success" and run["task_states"]["refresh_snapshot"] == "success", run["task_states"]
    inst.api.wait_until_idle("transform_dbt", settle=0.5)
    inst.api.wait_until_idle("monitor", settle=0.5)
    return inst


def sql(inst, query: str, params=()) -> list[tuple]:
    with duckdb.connect(str(inst.warehouse), read_only=True) as con:
        return con.execute(query, list(params)).fetchall()


def expected_kpis(inst, gym=None, start=None, end=None, age=None) -> dict:
    """The dashboard's KPIs, computed straight from the warehouse (gold and the silver facts it names)."""
    [(members,)] = sql(
        inst,
        f"select count(*) from silver.users as u where (? is null or {AGE_OF.format('u.user_id')} = ?) "
        "and (? is null or cast(u.registration_timestamp as date) <= ?)",
        [age, age, end, end],
    )
    [(visits,)] = sql(
        inst,
        "select count(*) from silver.gym_logs as g left join silver.users as u on g.mac_address = u.mac_address "
        "where g.logout is not null and (? is null or g.gym = ?) and (? is null or cast(g.login as date) >= ?) "
        f"and (? is null or cast(g.login as date) <= ?) and (? is null or {AGE_OF.format('u.user_id')} = ?)",
        [gym, gym, start, start, end, end, age, age],
    )
    [(workouts, mean_bpm)] = sql(
        inst,
        "select count(*), avg(b.avg_bpm) from silver.completed_workouts as w "
        "left join gold.workout_bpm_summary as b on (b.user_id, b.workout_id, b.session_id) = "
        "(w.user_id, w.workout_id, w.session_id) "
        f"where (? is null or {GYM_OF} = ?) and (? is null or cast(w.start_time as date) >= ?) "
        f"and (? is null or cast(w.start_time as date) <= ?) and (? is null or {AGE_OF.format('w.user_id')} = ?)",
        [gym, gym, start, start, end, end, age, age],
    )
    [(quarantined,)] = sql(
        inst,
        "select count(*) from silver.quarantine where (? is null or cast(load_time as date) >= ?) "
        "and (? is null or cast(load_time as date) <= ?)",
        [start, start, end, end],
    )
    return {
        "members": members,
        "visits": visits,
        "workouts": workouts,
        "mean_bpm": mean_bpm,
        "quarantined": quarantined,
    }


def assert_same(shown: dict, expected: dict) -> None:
    for key, value in expected.items():
        if key == "mean_bpm" and value is not None:
            assert shown[key] == pytest.approx(float(value), abs=1e-6), (key, shown, expected)
        else:
            assert shown[key] == value, (key, shown, expected)


def a_filter(inst) -> tuple[int, str, str]:
    """The gym, day and age band of the busiest gym day of one age band in gold: a filter that leaves some rows."""
    [(gym, day, age)] = sql(
        inst,
        "select g.gym, g.date, coalesce(b.age, 'no profile') from gold.gym_summary as g "
        "left join silver.user_bins as b on g.user_id = b.user_id group by all order by count(*) desc, 1, 2, 3 limit 1",
    )
    return gym, str(day), age


# --- login ----------------------------------------------------------------------------------------------


def test_dashboard_and_api_need_a_login(inst):
    api = inst.api
    for path in (
        "/fitlake-dashboard/",
        "/fitlake-dashboard/plotly.min.js",
        "/fitlake-api/v1/gym_summary",
        "/fitlake-api/v1/health/latest",
        "/fitlake-api/v1/openapi.json",
    ):
        assert api.call("GET", path)[0] == 401, path
        assert api.call("GET", path, token="not-a-jwt")[0] in (401, 403), path
        assert api.call("GET", path, cookie="not-a-jwt")[0] in (401, 403), path
        assert api.call("GET", path, token=api.token)[0] == 200, path
        assert api.call("GET", path, cookie=api.token)[0] == 200, path  # the UI's session cookie
    status, body = api.call("GET", "/fitlake-dashboard/", accept="text/html")
    assert status == 401 and b"/auth/login" in body
    plugins = api.json("GET", "/api/v2/plugins")["plugins"]
    views = [v for p in plugins for v in p.get("external_views", [])]
    assert any(v["href"].endswith("/fitlake-dashboard/") for v in views), views


def test_plotly_is_served_locally_and_the_page_loads_nothing_from_elsewhere(inst):
    status, body = inst.api.call("GET", "/fitlake-dashboard/plotly.min.js", token=inst.api.token)
    assert status == 200 and len(body) > 1_000_000 and b"plotly" in body[:2000].lower()
    status, body = inst.api.call("GET", "/fitlake-dashboard/", token=inst.api.token)
    page = body.decode()
    assert status == 200 and '<script src="plotly.min.js"></script>' in page
    markup = page.split('<script id="fitlake-data"')[0]  # the data may hold any text; the markup may not
    assert "http://" not in markup and "https://" not in markup


# --- the API ----------------------------------------------------------------------------------------------


def test_api_pages_gold_from_the_snapshot(inst):
    api = inst.api
    [(total,)] = sql(inst, "select count(*) from gold.gym_summary")
    assert total > 2
    first = api.json("GET", "/fitlake-api/v1/gym_summary?limit=2")
    assert first["total"] == total and len(first["items"]) == 2 and first["next_offset"] == 2
    rest = api.json("GET", f"/fitlake-api/v1/gym_summary?limit=1000&offset={first['next_offset']}")
    assert len(first["items"]) + len(rest["items"]) == total and rest["next_offset"] is None
    gym, day, _ = a_filter(inst)
    filtered = api.json("GET", f"/fitlake-api/v1/gym_summary?gym={gym}&from={day}&to={day}")
    [(expected,)] = sql(inst, "select count(*) from gold.gym_summary where gym = ? and date = ?", [gym, day])
    assert filtered["total"] == expected > 0
    assert all(r["gym"] == gym and r["date"] == day for r in filtered["items"])
    bpm = api.json("GET", "/fitlake-api/v1/workout_bpm_summary?limit=1000")
    assert bpm["total"] == sql(inst, "select count(*) from gold.workout_bpm_summary")[0][0] > 0
    means = {(r["user_id"], r["workout_id"], r["session_id"]): r["avg_bpm"] for r in bpm["items"]}
    for key, mean in sql(inst, "select (user_id, workout_id, session_id), avg_bpm from gold.workout_bpm_summary"):
        assert means[tuple(key.values()) if isinstance(key, dict) else tuple(key)] == pytest.approx(mean)
    snapshot = api.json("GET", "/fitlake-api/v1/snapshot")
    assert snapshot["rows"]["gym_summary"] == total
    assert inst.first_monitor_run["dag_run_id"] in snapshot["source"]


def test_api_health_serves_the_history(inst):
    api = inst.api
    latest = api.json("GET", "/fitlake-api/v1/health/latest")
    rows = history(inst, inst.first_monitor_run["dag_run_id"])
    assert latest["total"] == len(rows) > 20
    assert {(r["check_name"], r["entity"], r["status"]) for r in latest["items"]} == {
        (r["check_name"], r["entity"], r["status"]) for r in rows
    }
    fresh = api.json("GET", "/fitlake-api/v1/health/checks?check=freshness&entity=bpm")
    assert fresh["total"] >= 1 and {(r["check_name"], r["entity"]) for r in fresh["items"]} == {("freshness", "bpm")}


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("/gym_summary?limit=0", "limit"),
        ("/gym_summary?limit=5000", "limit"),
        ("/gym_summary?offset=-1", "offset"),
        ("/gym_summary?gym=abc", "gym"),
        ("/gym_summary?from=2024-13-01", "from"),
        ("/gym_summary?from=2024-06-02&to=2024-06-01", "from"),
        ("/workout_bpm_summary?age=elderly", "age"),
        ("/health/checks?status=bad", "status"),
        ("/health/checks?check=nope", "check"),
        ("/health/checks?since=yesterday", "since"),
        ("/kpis?from=2024-06-02&to=2024-06-01", "from"),
    ],
)
def test_bad_parameters_get_a_422_naming_them(inst, query, name):
    status, body = inst.api.call("GET", "/fitlake-api/v1" + query, token=inst.api.token)
    assert status == 422, (query, status, body[:300])
    detail = json.loads(body)["detail"]
    assert any(name in entry["loc"] for entry in detail), detail
    assert all(entry["msg"] for entry in detail)


def test_api_kpis_equal_sql_over_the_warehouse(inst):
    api = inst.api
    assert_same(api.json("GET", "/fitlake-api/v1/kpis"), expected_kpis(inst))
    gym, day, age = a_filter(inst)
    assert_same(
        api.json("GET", f"/fitlake-api/v1/kpis?gym={gym}&from={day}&to={day}&age={age}"),
        expected_kpis(inst, gym, day, day, age),
    )


def test_schemathesis_against_the_api_schema(inst):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    headers = {"Authorization": f"Bearer {inst.api.token}"}
    schema = schemathesis.openapi.from_url(f"{inst.airflow.url}/fitlake-api/v1/openapi.json", headers=headers)
    schema.config.update(base_url=f"{inst.airflow.url}/fitlake-api")
    failures, operations = [], 0
    for operation in schema.get_all_operations():
        op = operation.ok()
        operations += 1

        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=op.as_strategy())
        def run(case):
            case.call_and_validate(headers=headers)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{op.label}: {exc}")
    assert operations == 6
    assert not failures, "\n\n".join(failures)


# --- the page in a browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(inst):
    """A headless Chromium page, logged in to Airflow through its login form."""
    from playwright.sync_api import sync_playwright

    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is missing: `make setup-dev` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1500})
        page.set_default_timeout(60_000)
        page.goto(inst.airflow.url + "/")
        page.get_by_label("Username").fill(inst.login.username)
        page.get_by_label("Password").fill(inst.login.password)
        page.get_by_role("button", name="Sign In").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        yield page
        browser.close()


def shown_kpis(page) -> dict:
    """The KPIs as the page shows them (formatted text), and the numbers behind them."""
    text = {k: page.locator(f"#kpi-{k}").inner_text() for k in ("members", "visits", "workouts", "bpm", "quarantine")}
    return {"text": text, "numbers": page.evaluate("window.fitlakeFigures")}


def formatted(expected: dict) -> dict:
    mean = expected["mean_bpm"]
    return {
        "members": f"{expected['members']:,}",
        "visits": f"{expected['visits']:,}",
        "workouts": f"{expected['workouts']:,}",
        "bpm": "-" if mean is None else f"{float(mean):,.1f}",
        "quarantine": f"{expected['quarantined']:,}",
    }


def chart(page, element_id: str) -> list[dict]:
    return page.evaluate(f"document.getElementById('{element_id}').data.map(t => ({{name: t.name, x: t.x, y: t.y}}))")


def test_the_dashboard_shows_the_figures_sql_gives_and_its_filters_work(inst, page, artifacts_dir):
    page.goto(f"{inst.airflow.url}/fitlake-dashboard/")
    page.get_by_text("Gym utilisation per gym and day").wait_for()
    assert page.evaluate("document.body.dataset.ready") == "true"
    assert page.evaluate("typeof Plotly") == "object"  # plotly.js came from the plugin
    assert page.locator(".js-plotly-plot").count() == 5
    expected = expected_kpis(inst)
    kpis = shown_kpis(page)
    assert kpis["text"] == formatted(expected)
    assert_same(kpis["numbers"], expected)

    [workouts] = chart(page, "chart-workouts")
    per_day = sql(inst, "select cast(start_time as date)::varchar, count(*) from silver.completed_workouts group by 1")
    assert dict(zip(workouts["x"], workouts["y"])) == dict(per_day)
    minutes, exercising = chart(page, "chart-utilisation")
    per_visit_day = sql(
        inst,
        "with visits as (select gym, date, mac_address, login, any_value(minutes_in_gym) as m, "
        "sum(minutes_exercising) as e from gold.gym_summary group by all) "
        "select date::varchar || ' · gym ' || gym, sum(m), sum(e) from visits group by 1",
    )
    assert dict(zip(minutes["x"], minutes["y"])) == pytest.approx({k: float(m) for k, m, _ in per_visit_day})
    assert dict(zip(exercising["x"], exercising["y"])) == pytest.approx({k: float(e) for k, _, e in per_visit_day})
    heart = {(t["name"], x): y for t in chart(page, "chart-heart") for x, y in zip(t["x"], t["y"]) if y is not None}
    by_band = sql(
        inst,
        "select coalesce(age, 'no profile'), coalesce(gender, 'no profile'), avg(avg_bpm) "
        "from gold.workout_bpm_summary group by all",
    )
    assert heart == pytest.approx({(gender, age): mean for age, gender, mean in by_band})
    health_rows = page.locator("#health-table tr").count()
    assert health_rows == len(history(inst, inst.first_monitor_run["dag_run_id"])) + 1
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

    gym, day, age = a_filter(inst)
    page.select_option("#f-gym", str(gym))
    page.fill("#f-from", day)
    page.fill("#f-to", day)
    page.select_option("#f-age", age)
    filtered = expected_kpis(inst, gym, day, day, age)
    assert filtered != expected and filtered["visits"] > 0
    kpis = shown_kpis(page)
    assert kpis["text"] == formatted(filtered)
    assert_same(kpis["numbers"], filtered)
    page.screenshot(path=str(artifacts_dir / "dashboard_filtered.png"), full_page=True)
    for name in ("dashboard.png", "dashboard_filtered.png"):
        assert (artifacts_dir / name).stat().st_size > 50_000, f"{name} looks empty"


def test_the_dashboard_opens_inside_the_airflow_ui(inst, page, artifacts_dir):
    page.goto(f"{inst.airflow.url}/plugin/fitlake-dashboard")
    frame = page.frame_locator("iframe").first
    frame.get_by_text("Heart rate by age band and gender").wait_for()
    frame.locator("body[data-ready=true]").wait_for()
    shot = artifacts_dir / "dashboard_in_airflow.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 50_000
