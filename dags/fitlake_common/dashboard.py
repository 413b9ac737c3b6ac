"""The FitLake dashboard: one static HTML page over the snapshot and the health history.

The page embeds small aggregates (cubes keyed by gym, day, age band...) computed here with DuckDB
over the snapshot's Parquet, and draws them with plotly.js, loaded from `plotly.min.js` next to the
page (the copy shipped in the plotly package: no CDN). Filters (gym, date range, age band) are
applied in the browser on those cubes, so the page needs no server: the Airflow plugin serves it
behind Airflow's login, `make dashboard` serves the same file locally.

What each figure counts (the tests compare them with SQL over the warehouse):
* members: silver.users registered up to the end of the date range (age band filter);
* visits: completed gym visits (silver.gym_logs with a logout) by login day (gym, dates, age band);
* workouts: completed workouts by start day (dates, age band; gym: those during a visit of it);
* mean bpm: the mean of gold.workout_bpm_summary.avg_bpm over those workouts;
* quarantined records: silver.quarantine rows by load day (dates);
* gym utilisation: gold.gym_summary per gym and day, minutes in gym (each visit once) against
  minutes exercising;
* heart rate by age band and gender: mean of avg_bpm, lowest min_bpm, highest max_bpm (gold);
* health: the latest result of every check from the health history, freshness per source.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

from fitlake_common import health, snapshot

DASHBOARD_DIR = Path(os.environ.get("FITLAKE_DASHBOARD_DIR") or health.DATA_ROOT / "dashboard").resolve()
TEMPLATE = Path(__file__).with_name("dashboard.html")
AGE_BANDS = ["under 18", "18-25", "25-35", "35-45", "45-55", "55-65", "65-75", "75-85", "85-95", "95+", "invalid age"]


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


CUBES = {
    "members": "select age, cast(registered_on as varchar) as date, count(*) as members from {members} group by all",
    "visits": (
        "select gym, cast(date as varchar) as date, age, count(*) as visits, sum(minutes_in_gym) as minutes_in_gym "
        "from {visits} group by all"
    ),
    "workouts": (
        "select coalesce(gym, -1) as gym, cast(date as varchar) as date, age, gender, count(*) as workouts, "
        "count(avg_bpm) as with_bpm, sum(avg_bpm) as sum_avg_bpm, min(min_bpm) as min_bpm, max(max_bpm) as max_bpm "
        "from {workouts} group by all"
    ),
    # gold.gym_summary: a visit holding two workouts is one row per workout, its minutes counted once
    "utilisation": """
        with visits as (
            select gym, date, mac_address, login, user_id, any_value(minutes_in_gym) as minutes_in_gym,
                   sum(minutes_exercising) as minutes_exercising
            from {gym_summary} group by all
        )
        select v.gym, cast(v.date as varchar) as date, coalesce(m.age, 'no profile') as age,
               sum(v.minutes_in_gym) as minutes_in_gym, sum(v.minutes_exercising) as minutes_exercising
        from visits as v left join {members} as m on v.user_id = m.user_id
        group by all
    """,
    "quarantine": (
        "select cast(date as varchar) as date, reason, coalesce(topic, replace(source_table, '_bz', '')) as source, "
        "sum(records) as records from {quarantine} group by all"
    ),
}


def _records(con, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, (_plain(v) for v in row))) for row in cursor.fetchall()]


def _plain(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "is_finite"):  # Decimal
        return float(value)
    return value


def data(snapshot_dir: Path | None = None, history_dir: Path | None = None) -> dict:
    """Everything the page shows, as JSON-ready dicts."""
    import duckdb

    snapshot_dir = snapshot_dir or snapshot.current_dir()
    result: dict = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "age_bands": AGE_BANDS}
    with duckdb.connect() as con:
        if snapshot_dir is not None:
            tables = {
                name: "read_parquet('{}')".format(str(snapshot_dir / f"{name}.parquet").replace("'", "''"))
                for name in snapshot.EXPORTS
            }
            for name, sql in CUBES.items():
                result[name] = _records(con, sql.format(**tables))
            result["gyms"] = sorted({r["gym"] for r in result["visits"]} | {r["gym"] for r in result["utilisation"]})
            result["snapshot"] = json.loads((snapshot_dir / "_snapshot.json").read_text())
        else:
            result.update({name: [] for name in CUBES}, gyms=[], snapshot=None)
        result["health"] = _records(
            con,
            f"select check_name, entity, layer, status, value, threshold, detail, "
            f"cast(checked_at as varchar) as checked_at, run_url from {health.latest_sql(history_dir)} "
            "order by case status when 'error' then 0 when 'warn' then 1 else 2 end, check_name, entity",
        )
    return result


def build(out_dir: Path | None = None, snapshot_dir: Path | None = None, history_dir: Path | None = None) -> Path:
    """Write index.html (and plotly.min.js beside it); atomic, so a reader never sees half a page."""
    out_dir = Path(out_dir or DASHBOARD_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "plotly.min.js"
    if not js.exists() or js.stat().st_size != plotly_js().stat().st_size:
        shutil.copy(plotly_js(), out_dir / ".plotly.min.js.tmp")
        os.replace(out_dir / ".plotly.min.js.tmp", js)
    payload = json.dumps(data(snapshot_dir, history_dir), default=str).replace("</", "<\\/")
    page = out_dir / "index.html"
    temp = out_dir / ".index.html.tmp"
    temp.write_text(TEMPLATE.read_text().replace("__DATA__", payload))
    os.replace(temp, page)
    return page


def main(argv: list[str] | None = None) -> int:
    """`make dashboard`: refresh the snapshot when the warehouse is free, build the page, serve it locally."""
    import argparse
    import functools
    import http.server

    from fitlake_common import config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FITLAKE_DASHBOARD_PORT", "8082")))
    parser.add_argument("--no-serve", action="store_true", help="only build the page")
    args = parser.parse_args(argv)
    try:
        meta = snapshot.export(config.WAREHOUSE, source="make dashboard")
        print(f"snapshot exported from {config.WAREHOUSE}: {meta['rows']}")
    except snapshot.SnapshotError as exc:
        if snapshot.current_dir() is None:
            print(f"error: {exc}")
            return 2
        print(f"keeping the current snapshot ({exc})")
    page = build()
    print(f"dashboard: {page}")
    if args.no_serve:
        return 0
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(f"serving on http://localhost:{args.port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
