"""Airflow plugin: the dbt docs of FitLake in the Airflow UI, for logged-in users only.

Why not the Cosmos dbt-docs plugin: measured on Cosmos 1.15 / Airflow 3.3, its /cosmos/<slug>/ pages
answer without any session. This plugin serves the three files `dbt docs generate` writes
(index.html, manifest.json, catalog.json) from FITLAKE_DBT_DOCS_DIR, and every route depends on
Airflow's own `get_user` (the JWT in the `_token` session cookie or an `Authorization: Bearer`
header, validated by the configured auth manager). No session: 401 and a link to the login page.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from airflow.api_fastapi.core_api.security import get_user
from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

URL_PREFIX = "/fitlake-docs"
FILES = {"index.html": "text/html", "manifest.json": "application/json", "catalog.json": "application/json"}
BASE_PATH = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def docs_dir() -> Path:
    default = Path(os.environ.get("FITLAKE_DATA_ROOT") or Path(__file__).resolve().parents[2] / "data") / "dbt_docs"
    return Path(os.environ.get("FITLAKE_DBT_DOCS_DIR") or default)


def create_app() -> FastAPI:
    app = FastAPI(title="FitLake dbt docs", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def refuse(request: Request, exc: HTTPException):
        if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
            login = f"{BASE_PATH}/auth/login?next={BASE_PATH}{URL_PREFIX}/"
            return HTMLResponse(
                f'<p>Log in to read the dbt docs: <a href="{login}">login</a></p>', status_code=exc.status_code
            )
        return await http_exception_handler(request, exc)

    @app.get("/", dependencies=[Depends(get_user)], include_in_schema=False)
    def root():
        return RedirectResponse(f"{BASE_PATH}{URL_PREFIX}/index.html")

    @app.get("/{name}", dependencies=[Depends(get_user)])
    def docs_file(name: str):
        if name not in FILES:
            raise HTTPException(404, "not a dbt docs file")
        path = docs_dir() / name
        if not path.is_file():
            raise HTTPException(404, "dbt docs not generated yet: run the transform_dbt DAG (or `make docs`)")
        return FileResponse(
            path,
            media_type=FILES[name],
            headers={"Cache-Control": "no-store", "Content-Security-Policy": "frame-ancestors 'self'"},
        )

    return app


class FitlakeDocsPlugin(AirflowPlugin):
    name = "fitlake_dbt_docs"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "FitLake dbt docs"}]
    external_views = [
        {
            "name": "dbt docs",
            "href": f"{BASE_PATH}{URL_PREFIX}/index.html",
            "destination": "nav",
            "category": "browse",
            "url_route": "dbt-docs",
        }
    ]
