"""Airflow plugin: the FitLake dashboard and the read-only JSON API, for logged-in users only.

An Airflow 3 plugin's FastAPI app does not inherit Airflow's auth, so every route depends on
Airflow's own `get_user` (the JWT in the `_token` session cookie or an `Authorization: Bearer`
header), as the dbt docs plugin does. Without a session: 401 (HTML asks for the login page).

* `/fitlake-dashboard/` serves the page the monitor DAG regenerates (FITLAKE_DASHBOARD_DIR) and
  plotly.min.js from the plotly package (no CDN); menu **Browse > FitLake dashboard**.
* `/fitlake-api/v1/...` is `fitlake_common.api`; its OpenAPI schema is `/fitlake-api/v1/openapi.json`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.api_fastapi.core_api.security import get_user
from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fitlake_common import api, dashboard

DASHBOARD_PREFIX = "/fitlake-dashboard"
API_PREFIX = "/fitlake-api"
BASE_PATH = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": "frame-ancestors 'self'"}


def create_dashboard_app() -> FastAPI:
    app = FastAPI(title="FitLake dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def refuse(request: Request, exc: HTTPException):
        if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
            login = f"{BASE_PATH}/auth/login?next={BASE_PATH}{DASHBOARD_PREFIX}/"
            return HTMLResponse(
                f'<p>Log in to see the dashboard: <a href="{login}">login</a></p>', status_code=exc.status_code
            )
        return await http_exception_handler(request, exc)

    @app.get("/", dependencies=[Depends(get_user)], include_in_schema=False)
    def page():
        path = dashboard.DASHBOARD_DIR / "index.html"
        if not path.is_file():
            raise HTTPException(404, "the dashboard is not built yet: run the monitor DAG (or `make dashboard`)")
        return FileResponse(path, media_type="text/html", headers=HEADERS)

    @app.get("/index.html", dependencies=[Depends(get_user)], include_in_schema=False)
    def index():
        return RedirectResponse(f"{BASE_PATH}{DASHBOARD_PREFIX}/")

    @app.get("/plotly.min.js", dependencies=[Depends(get_user)], include_in_schema=False)
    def plotly_js():
        return FileResponse(
            dashboard.plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    return app


class FitlakeDashboardPlugin(AirflowPlugin):
    name = "fitlake_dashboard"
    fastapi_apps = [
        {"app": create_dashboard_app(), "url_prefix": DASHBOARD_PREFIX, "name": "FitLake dashboard"},
        {
            "app": api.create_app(get_user, root_path=f"{BASE_PATH}{API_PREFIX}"),
            "url_prefix": API_PREFIX,
            "name": "FitLake API",
        },
    ]
    external_views = [
        {
            "name": "FitLake dashboard",
            "href": f"{BASE_PATH}{DASHBOARD_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "fitlake-dashboard",
        }
    ]
