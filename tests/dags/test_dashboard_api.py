"""The dashboard and the JSON API in a real `airflow standalone`: behind Airflow's login, served from the
snapshot the monitor DAG exports, figures equal to SQL over the warehouse, headless Chromium
screenshots (tests/artifacts/), and a schemathesis run against the API's own OpenAPI schema.
"""

from __future__ import annotations

import json
import time

import duckdb
import pytest
from chromium import Chromium, chromium_binary
from health_stack import HealthInstallation


@pytest.fixture(scope="module")
def installation(tmp_path_factory, dbt_manifest):
    started = time.monotonic()
    inst = HealthInstallation(tmp_path_factory.mktemp("fitlake-dashboard"), dbt_manifest)
    try:
        inst.build_data(members=30, gyms=3, days=2, seed=11)
        inst.start_airflow()
        run = inst.run_monitor({"refresh_snapshot": True})
        assert run["state"] == "success", run["task_states"]
        inst.monitor_run = run
        print(f"dashboard installation ready in {time.monotonic() - started:.0f}s")
        yield inst
    finally:
        inst.stop()


def sql(inst, query: str, params=()) -> list[tuple]:
    with duckdb.connect(str(inst.warehouse), read_only=True) as con:
        return con.execute(query, list(params)).fetchall()


def expected_kpis(inst, gym=None, start=None, end=None, age=None) -> dict:
    """The dashboard's KPIs, computed straight from the warehouse (gold and the silver facts it names)."""
    age_of = "coalesce((select b.age from silver.user_bins as b where b.user_id = {}), 'no profile')"
    members = sql(
        inst,
        f"select count(*) from silver.users as u where (? is null or {age_of.format('u.user_id')} = ?) "
        "and (? is null or cast(u.registration_timestamp as date) <= ?)",
        [age, age, end, end],
    )[0][0]
    visits = sql(
        inst,
        "select count(*) from silver.gym_logs as g left join silver.users as u on g.mac_address = u.mac_address "
        f"where g.logout is not null and (? is null or g.gym = ?) and (? is null or cast(g.login as date) >= ?) "
        f"and (? is null or cast(g.login as date) <= ?) and (? is null or {age_of.format('u.user_id')} = ?)",
        [gym, gym, start, start, end, end, age, age],
    )[0][0]
    gym_of = (
        "(select min(s.gym) from gold.gym_summary as s where s.user_id = w.user_id and s.workout_id = w.workout_id "
        "and s.session_id = w.session_id)"
    )
    workouts, mean_bpm = sql(
        inst,
        "select count(*), avg(b.avg_bpm) from silver.completed_workouts as w "
        "left join gold.workout_bpm_summary as b on (b.user_id, b.workout_id, b.session_id) = "
        "(w.user_id, w.workout_id, w.session_id) "
        f"where (? is null or {gym_of} = ?) and (? is null or cast(w.start_time as date) >= ?) "
        f"and (? is null or cast(w.start_time as date) <= ?) and (? is null or {age_of.format('w.user_id')} = ?)",
        [gym, gym, start, start, end, end, age, age],
    )[0]
    quarantined = sql(
        inst,
        "select count(*) from silver.quarantine where (? is null or cast(load_time as date) >= ?) "
        "and (? is null or cast(load_time as date) <= ?)",
        [start, start, end, end],
    )[0][0]
    return {
        "members": members,
        "visits": visits,
        "workouts": workouts,
        "mean_bpm": mean_bpm,
        "quarantined": quarantined,
    }


def assert_same(page: dict, expected: dict):
    for key, value in expected.items():
        if key == "mean_bpm" and value is not None:
            assert page[key] == pytest.approx(float(value), abs=1e-6), (key, page, expected)
        else:
            assert page[key] == value, (key, page, expected)


def test_dashboard_and_api_need_a_login(installation):
    api = installation.api
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
        assert api.call("GET", path, cookie=api.token)[0] == 200, path
    status, body = api.call("GET", "/fitlake-dashboard/", accept="text/html")
    assert status == 401 and b"/auth/login" in body
    status, body = api.call("GET", "/fitlake-dashboard/plotly.min.js", token=api.token)
    assert len(body) > 1_000_000 and b"plotly" in body[:2000].lower()  # served locally, not from a CDN
    plugins = api.json("GET", "/api/v2/plugins")["plugins"]
    views = [v for p in plugins for v in p.get("external_views", [])]
    assert any(v["href"].endswith("/fitlake-dashboard/") for v in views), views


def test_the_page_loads_no_script_from_elsewhere(installation):
    status, body = installation.api.call("GET", "/fitlake-dashboard/", token=installation.api.token)
    page = body.decode()
    assert status == 200 and '<script src="plotly.min.js"></script>' in page
    assert "http://" not in page.split("<script id=")[0] and "https://" not in page.split("<script id=")[0]


def test_api_pages_gold_from_the_snapshot(installation):
    api = installation.api
    total = sql(installation, "select count(*) from gold.gym_summary")[0][0]
    assert total > 2
    first = api.json("GET", "/fitlake-api/v1/gym_summary?limit=2")
    assert first["total"] == total and len(first["items"]) == 2 and first["next_offset"] == 2
    rest = api.json("GET", f"/fitlake-api/v1/gym_summary?limit=1000&offset={first['next_offset']}")
    assert len(first["items"]) + len(rest["items"]) == total and rest["next_offset"] is None
    gym, day = sql(installation, "select gym, min(date) from gold.gym_summary group by gym order by gym limit 1")[0]
    filtered = api.json("GET", f"/fitlake-api/v1/gym_summary?gym={gym}&from={day}&to={day}")
    expected = sql(installation, "select count(*) from gold.gym_summary where gym = ? and date = ?", [gym, day])[0][0]
    assert filtered["total"] == expected and all(r["gym"] == gym and r["date"] == str(day) for r in filtered["items"])
    bpm = api.json("GET", "/fitlake-api/v1/workout_bpm_summary?limit=1000")
    assert bpm["total"] == sql(installation, "select count(*) from gold.workout_bpm_summary")[0][0]
    snapshot = api.json("GET", "/fitlake-api/v1/snapshot")
    assert snapshot["rows"]["gym_summary"] == total


def test_api_health_serves_the_history(installation):
    api = installation.api
    latest = api.json("GET", "/fitlake-api/v1/health/latest")
    rows = installation.history(installation.monitor_run["dag_run_id"])
    assert latest["total"] == len(rows) > 20
    fresh = api.json("GET", "/fitlake-api/v1/health/checks?check=freshness&entity=bpm")
    assert fresh["total"] >= 1 and {r["check_name"] for r in fresh["items"]} == {"freshness"}


@pytest.mark.parametrize(
    ("query", "names"),
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
def test_bad_parameters_get_a_422_naming_them(installation, query, names):
    status, body = installation.api.call("GET", "/fitlake-api/v1" + query, token=installation.api.token)
    assert status == 422, (query, status, body[:300])
    detail = json.loads(body)["detail"]
    assert any(names in entry["loc"] for entry in detail), detail
    assert all(entry["msg"] for entry in detail)


def test_api_kpis_equal_sql_over_the_warehouse(installation):
    api = installation.api
    assert_same(api.json("GET", "/fitlake-api/v1/kpis"), expected_kpis(installation))
    gym, day = sql(installation, "select gym, min(date) from gold.gym_summary group by gym order by gym limit 1")[0]
    [(age,)] = sql(installation, "select age from silver.user_bins group by age order by count(*) desc limit 1")
    assert_same(
        api.json("GET", f"/fitlake-api/v1/kpis?gym={gym}&from={day}&to={day}&age={age}"),
        expected_kpis(installation, gym, day, day, age),
    )


@pytest.mark.skipif(chromium_binary() is None, reason="headless Chromium is not installed (make setup-dev)")
def test_dashboard_figures_equal_sql_and_screenshots(installation, artifacts_dir):
    inst = installation
    browser = Chromium(1500, 1500)
    try:
        browser.set_cookie(inst.server.url, "_token", inst.api.token)
        browser.open(f"{inst.server.url}/fitlake-dashboard/", wait_for_text="Gym utilisation", settle=2)
        assert browser.evaluate("document.body.dataset.ready") == "true"
        assert browser.evaluate("typeof Plotly") == "object"  # plotly.js came from the plugin
        figures = browser.evaluate("window.fitlakeFigures")
        assert_same(figures, expected_kpis(inst))
        shown = browser.evaluate("document.getElementById('kpi-members').textContent")
        assert shown == f"{figures['members']:,}"
        assert browser.evaluate("document.querySelectorAll('.js-plotly-plot').length") == 5
        health_rows = browser.evaluate("document.querySelectorAll('#health-table tr').length")
        assert health_rows == len(inst.history(inst.monitor_run["dag_run_id"])) + 1
        browser.screenshot(artifacts_dir / "dashboard.png")

        gym, day = sql(inst, "select gym, min(date) from gold.gym_summary group by gym order by gym limit 1")[0]
        [(age,)] = sql(inst, "select age from silver.user_bins group by age order by count(*) desc limit 1")
        browser.evaluate(
            f"(() => {{ const set = (id, v) => {{ const e = document.getElementById(id); e.value = v;"
            f" e.dispatchEvent(new Event('change')); }};"
            f" set('f-gym', '{gym}'); set('f-from', '{day}'); set('f-to', '{day}'); set('f-age', '{age}'); }})()"
        )
        time.sleep(1)
        assert_same(browser.evaluate("window.fitlakeFigures"), expected_kpis(inst, gym, day, day, age))
        browser.screenshot(artifacts_dir / "dashboard_filtered.png")
        text = browser.open(f"{inst.server.url}/plugin/fitlake-dashboard", wait_for_text="Gym utilisation", timeout=60)
        assert "Heart rate by age band and gender" in text
        shot = browser.screenshot(artifacts_dir / "dashboard_in_airflow.png")
    finally:
        browser.close()
    assert shot.stat().st_size > 20_000


def test_schemathesis_against_the_api_schema(installation):
    import schemathesis
    from hypothesis import HealthCheck, settings

    api = installation.api
    headers = {"Authorization": f"Bearer {api.token}"}
    schema = schemathesis.openapi.from_url(f"{installation.server.url}/fitlake-api/v1/openapi.json", headers=headers)
    schema.config.update(base_url=f"{installation.server.url}/fitlake-api")
    failures = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @schemathesis.given(case=op.as_strategy())
        def run(case):
            case.call_and_validate(headers=headers)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{op.label}: {exc}")
    assert not failures, "\n\n".join(failures)
