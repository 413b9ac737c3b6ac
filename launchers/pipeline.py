"""Steps shared by `make demo`, `make airflow` and tests/dags: the dbt manifest, the warehouse report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from launchers import DAGS_DIR, REPO_ROOT
from launchers.airflow_env import VENV_BIN

LAYERS = ("bronze", "silver", "gold")


def dbt_sources_mtime(project_dir: Path) -> float:
    paths = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds", "snapshots"):
        paths += [p for p in (project_dir / folder).rglob("*") if p.is_file()]
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def dbt_env_of(env: dict[str, str]) -> dict[str, str]:
    """The environment the DAGs hand dbt in an installation with `env` (fitlake_common.config.DBT_ENV there)."""
    probe = "import json; from fitlake_common.config import DBT_ENV; print(json.dumps(DBT_ENV))"
    done = subprocess.run([str(VENV_BIN / "python"), "-c", probe], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def ensure_manifest(env: dict[str, str], force: bool = False) -> Path:
    """`dbt parse` when the manifest is missing or older than the project (what `make dbt-manifest` does).

    It parses with the environment the DAGs give dbt, so the partial parse it leaves beside the manifest is
    one the transform's first build can reuse (dbt reparses everything when a variable its profile reads
    differs).
    """
    project = Path(env.get("FITLAKE_DBT_PROJECT_DIR") or REPO_ROOT / "dbt_project")
    manifest = Path(env.get("FITLAKE_DBT_MANIFEST") or project / "target" / "manifest.json")
    if not force and manifest.exists() and manifest.stat().st_mtime >= dbt_sources_mtime(project):
        return manifest
    done = subprocess.run(
        [
            str(VENV_BIN / "dbt"),
            "parse",
            "--quiet",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(manifest.parent),
        ],
        env={**env, **dbt_env_of(env)},
        cwd=project,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return manifest


def warehouse_report(warehouse: Path, sample: int = 5) -> dict:
    """Row counts per layer and table, a few gold rows and the quarantine count (read-only)."""
    import duckdb

    report: dict = {"warehouse": str(warehouse), "tables": {}, "gold_rows": {}, "quarantine": None}
    if not warehouse.exists():
        return report
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name in ('bronze', 'silver', 'gold') "
            "order by schema_name, table_name"
        ).fetchall()
        for schema, table in tables:
            count = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            report["tables"][f"{schema}.{table}"] = count
            if schema == "gold":
                cursor = con.execute(f'select * from "{schema}"."{table}" limit {int(sample)}')
                columns = [d[0] for d in cursor.description]
                report["gold_rows"][f"{schema}.{table}"] = [dict(zip(columns, row)) for row in cursor.fetchall()]
        if "silver.quarantine" in report["tables"]:
            report["quarantine"] = report["tables"]["silver.quarantine"]
            report["quarantine_by_reason"] = dict(
                con.execute("select reason, count(*) from silver.quarantine group by reason order by 2 desc").fetchall()
            )
    return report


def format_report(report: dict, docs_dir: Path | None = None) -> str:
    lines = [f"warehouse {report['warehouse']}"]
    for layer in LAYERS:
        tables = {k: v for k, v in report["tables"].items() if k.startswith(layer + ".")}
        lines.append(f"  {layer:<6} {sum(tables.values()):>9,} rows in {len(tables)} tables")
        lines += [f"           {name:<32} {count:>9,}" for name, count in tables.items()]
    for name, rows in report["gold_rows"].items():
        lines.append(f"  first rows of {name}:")
        lines += ["    " + ", ".join(f"{k}={v}" for k, v in row.items()) for row in rows]
    lines.append(f"  quarantine: {report['quarantine']} record(s) {report.get('quarantine_by_reason', '')}")
    if docs_dir is not None:
        lines.append(f"  dbt docs: {docs_dir / 'index.html'} (in the Airflow UI: Browse > dbt docs, after login)")
    return "\n".join(lines)


def in_env(env: dict[str, str]):
    """Settings of the ingestion package as seen by the Airflow processes started with `env`."""
    from ingestion.config import load_settings

    return load_settings({k: v for k, v in env.items() if k.startswith("FITLAKE_")})


__all__ = ["ensure_manifest", "format_report", "in_env", "warehouse_report"]


if __name__ == "__main__":  # `make dbt-manifest`: the manifest of the default installation
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DAGS_DIR), str(REPO_ROOT)])}
    print(ensure_manifest(environment, force="--force" in sys.argv))
