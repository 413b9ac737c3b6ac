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
    temp.write_text(TEMPLATE.replace("__DATA__", payload))
    os.replace(temp, page)
    return page


TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>FitLake dashboard</title>
<script src="plotly.min.js"></script>
<style>
  body { font-family: system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0 0 6px; }
  .meta { color: #666; font-size: 12px; margin-bottom: 12px; }
  .filters { display: flex; gap: 16px; align-items: end; margin-bottom: 12px; flex-wrap: wrap; }
  .filters label { font-size: 12px; display: flex; flex-direction: column; gap: 2px; }
  .kpis { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; margin-bottom: 12px; }
  .kpi { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; }
  .kpi .label { font-size: 12px; color: #666; } .kpi .value { font-size: 26px; font-weight: 600; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
  .card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
  .note { font-size: 11px; color: #777; }
  table { border-collapse: collapse; width: 100%; font-size: 12px; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eee; vertical-align: top; }
  .status { font-weight: 600; padding: 1px 6px; border-radius: 4px; }
  .pass { background: #d7f5dd; } .warn { background: #ffe9a8; } .error { background: #ffc9c9; } .skipped { background: #eee; }
</style>
</head>
<body>
<h1>FitLake</h1>
<div class="meta" id="meta"></div>
<div class="filters">
  <label>Gym <select id="f-gym"></select></label>
  <label>From <input type="date" id="f-from"></label>
  <label>To <input type="date" id="f-to"></label>
  <label>Age band <select id="f-age"></select></label>
  <button id="f-reset">Reset</button>
</div>
<div class="kpis">
  <div class="kpi"><div class="label">Members</div><div class="value" id="kpi-members">-</div></div>
  <div class="kpi"><div class="label">Gym visits</div><div class="value" id="kpi-visits">-</div></div>
  <div class="kpi"><div class="label">Workouts</div><div class="value" id="kpi-workouts">-</div></div>
  <div class="kpi"><div class="label">Mean bpm</div><div class="value" id="kpi-bpm">-</div></div>
  <div class="kpi"><div class="label">Quarantined records</div><div class="value" id="kpi-quarantine">-</div></div>
</div>
<div class="grid">
  <div class="card"><h2>Gym utilisation per gym and day</h2><div id="chart-utilisation" style="height:320px"></div>
    <div class="note">gold.gym_summary: minutes in the gym (each visit once) against minutes exercising. Filters: gym, dates, age band.</div></div>
  <div class="card"><h2>Heart rate by age band and gender</h2><div id="chart-heart" style="height:320px"></div>
    <div class="note">Mean of each workout's avg_bpm; the bars span the lowest min_bpm to the highest max_bpm. Filters: all.</div></div>
  <div class="card"><h2>Workouts per day</h2><div id="chart-workouts" style="height:300px"></div>
    <div class="note">Completed workouts by start day. Gym filter: workouts during a visit of that gym.</div></div>
  <div class="card"><h2>Quarantine by reason over time</h2><div id="chart-quarantine" style="height:300px"></div>
    <div class="note">silver.quarantine by load day. Filter: dates.</div></div>
  <div class="card"><h2>Freshness per source</h2><div id="chart-freshness" style="height:300px"></div>
    <div class="note">Hours since a file of the entity last landed; the line is its error threshold.</div></div>
  <div class="card"><h2>Health checks (latest result of each)</h2><div style="max-height:300px; overflow:auto"><table id="health-table"></table></div></div>
</div>
<script id="fitlake-data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById('fitlake-data').textContent);
const $ = (id) => document.getElementById(id);
const fmt = (n, d = 0) => n === null || n === undefined || Number.isNaN(n) ? '-' :
  Number(n).toLocaleString('en-US', {minimumFractionDigits: d, maximumFractionDigits: d});
const allDates = [...D.visits, ...D.workouts, ...D.utilisation, ...D.quarantine].map(r => r.date).filter(Boolean).sort();
const ages = [...new Set([...D.age_bands, ...D.members.map(r => r.age)])];

function options(select, values, label) {
  select.innerHTML = '<option value="">All</option>' + values.map(v => `<option value="${v}">${label(v)}</option>`).join('');
}
options($('f-gym'), D.gyms, g => 'gym ' + g);
options($('f-age'), ages, a => a);
function reset() {
  $('f-gym').value = ''; $('f-age').value = '';
  $('f-from').value = allDates[0] || ''; $('f-to').value = allDates[allDates.length - 1] || '';
}

function filters() {
  return {gym: $('f-gym').value === '' ? null : Number($('f-gym').value), from: $('f-from').value || null,
          to: $('f-to').value || null, age: $('f-age').value || null};
}
const inDates = (f, d) => (!f.from || d >= f.from) && (!f.to || d <= f.to);
const sum = (rows, k) => rows.reduce((a, r) => a + (r[k] || 0), 0);

function compute(f) {
  const members = D.members.filter(r => (!f.age || r.age === f.age) && (!f.to || r.date === null || r.date <= f.to));
  const visits = D.visits.filter(r => (f.gym === null || r.gym === f.gym) && inDates(f, r.date) && (!f.age || r.age === f.age));
  const workouts = D.workouts.filter(r => (f.gym === null || r.gym === f.gym) && inDates(f, r.date) && (!f.age || r.age === f.age));
  const util = D.utilisation.filter(r => (f.gym === null || r.gym === f.gym) && inDates(f, r.date) && (!f.age || r.age === f.age));
  const quarantine = D.quarantine.filter(r => inDates(f, r.date));
  const withBpm = sum(workouts, 'with_bpm');
  return {
    kpis: {members: sum(members, 'members'), visits: sum(visits, 'visits'), workouts: sum(workouts, 'workouts'),
           mean_bpm: withBpm ? sum(workouts, 'sum_avg_bpm') / withBpm : null, quarantined: sum(quarantine, 'records')},
    workouts, util, quarantine,
  };
}

function group(rows, keyFn, fields) {
  const out = new Map();
  for (const r of rows) {
    const k = keyFn(r);
    const acc = out.get(k) || {};
    for (const [f, how] of Object.entries(fields)) {
      const v = r[f]; if (v === null || v === undefined) continue;
      acc[f] = acc[f] === undefined ? v : how === 'min' ? Math.min(acc[f], v) : how === 'max' ? Math.max(acc[f], v) : acc[f] + v;
    }
    out.set(k, acc);
  }
  return out;
}
const layout = (extra) => Object.assign({margin: {l: 50, r: 10, t: 10, b: 60}, legend: {orientation: 'h', y: -0.25},
  font: {size: 11}, paper_bgcolor: 'white', plot_bgcolor: 'white'}, extra || {});
const plot = (id, traces, extra) => Plotly.react(id, traces, layout(extra), {displaylogo: false, responsive: true});

function render() {
  const f = filters();
  const c = compute(f);
  window.fitlakeFigures = c.kpis;  // read by the browser test
  $('kpi-members').textContent = fmt(c.kpis.members);
  $('kpi-visits').textContent = fmt(c.kpis.visits);
  $('kpi-workouts').textContent = fmt(c.kpis.workouts);
  $('kpi-bpm').textContent = fmt(c.kpis.mean_bpm, 1);
  $('kpi-quarantine').textContent = fmt(c.kpis.quarantined);

  const u = group(c.util, r => r.date + ' · gym ' + r.gym, {minutes_in_gym: 'sum', minutes_exercising: 'sum'});
  const ux = [...u.keys()].sort();
  plot('chart-utilisation', [
    {type: 'bar', name: 'minutes in gym', x: ux, y: ux.map(k => u.get(k).minutes_in_gym)},
    {type: 'bar', name: 'minutes exercising', x: ux, y: ux.map(k => u.get(k).minutes_exercising)},
  ], {barmode: 'group'});

  const h = group(c.workouts.filter(r => r.with_bpm > 0), r => r.age + '|' + r.gender,
                  {with_bpm: 'sum', sum_avg_bpm: 'sum', min_bpm: 'min', max_bpm: 'max'});
  const genders = [...new Set([...h.keys()].map(k => k.split('|')[1]))].sort();
  const bands = ages.filter(a => [...h.keys()].some(k => k.startsWith(a + '|')));
  plot('chart-heart', genders.map(g => {
    const cells = bands.map(a => h.get(a + '|' + g));
    const mean = cells.map(v => v ? v.sum_avg_bpm / v.with_bpm : null);
    return {type: 'bar', name: g, x: bands, y: mean,
            error_y: {type: 'data', symmetric: false, array: cells.map((v, i) => v ? v.max_bpm - mean[i] : null),
                      arrayminus: cells.map((v, i) => v ? mean[i] - v.min_bpm : null)}};
  }), {barmode: 'group', yaxis: {title: 'bpm'}});

  const w = group(c.workouts, r => r.date, {workouts: 'sum'});
  const wx = [...w.keys()].sort();
  plot('chart-workouts', [{type: 'bar', name: 'workouts', x: wx, y: wx.map(k => w.get(k).workouts)}], {xaxis: {type: 'category'}});

  const reasons = [...new Set(c.quarantine.map(r => r.reason))].sort();
  const qx = [...new Set(c.quarantine.map(r => r.date))].sort();
  const q = group(c.quarantine, r => r.date + '|' + r.reason, {records: 'sum'});
  plot('chart-quarantine', reasons.map(reason => ({type: 'bar', name: reason, x: qx,
    y: qx.map(d => (q.get(d + '|' + reason) || {records: 0}).records)})), {barmode: 'stack', xaxis: {type: 'category'}});
}

function renderHealth() {
  const fresh = D.health.filter(r => r.check_name === 'freshness');
  plot('chart-freshness', [
    {type: 'bar', name: 'hours since landed', x: fresh.map(r => r.entity), y: fresh.map(r => r.value),
     marker: {color: fresh.map(r => ({pass: '#5cb85c', warn: '#f0ad4e', error: '#d9534f'})[r.status] || '#999')}},
    {type: 'scatter', mode: 'markers', name: 'error after (h)', x: fresh.map(r => r.entity), y: fresh.map(r => r.threshold),
     marker: {symbol: 'line-ew-open', size: 30, color: '#d9534f'}},
  ], {yaxis: {title: 'hours'}});
  const esc = (s) => String(s === null || s === undefined ? '' : s).replace(/[&<>]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;'})[c]);
  $('health-table').innerHTML = '<tr><th>check</th><th>entity</th><th>status</th><th>value</th><th>detail</th></tr>' +
    D.health.map(r => `<tr><td>${esc(r.check_name)}</td><td>${esc(r.entity)}</td>` +
      `<td><span class="status ${esc(r.status)}">${esc(r.status)}</span></td>` +
      `<td>${r.value === null ? '' : fmt(r.value, Math.abs(r.value) < 10 ? 3 : 1)}</td><td>${esc(r.detail)}</td></tr>`).join('');
  const s = D.snapshot;
  const failing = D.health.filter(r => r.status === 'warn' || r.status === 'error').length;
  $('meta').textContent = (s ? `Snapshot of ${s.created_at}` : 'No snapshot yet: run transform_dbt, then the monitor DAG') +
    ` · page generated ${D.generated_at} · ${D.health.length} checks, ${failing} failing`;
}

for (const id of ['f-gym', 'f-from', 'f-to', 'f-age']) $(id).addEventListener('change', render);
$('f-reset').addEventListener('click', () => { reset(); render(); });
reset();
render();
renderHealth();
document.body.dataset.ready = 'true';
</script>
</body>
</html>
"""
