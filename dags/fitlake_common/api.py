"""The read-only JSON API over gold and health: `/fitlake-api/v1/...`, served from the snapshot.

Every request opens an in-memory DuckDB over the current snapshot's Parquet files (and the health
history's), never the warehouse. Parameters are validated by FastAPI (a wrong one gets a 422 that
names the parameter and what is wrong); lists are paginated (`limit` <= 1000, `offset`) and say
their `total`. The app is built by :func:`create_app` with the auth dependency to apply to every
route: the Airflow plugin passes Airflow's `get_user` (JWT bearer or the `_token` session cookie).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from fitlake_common import health, snapshot
from fitlake_common.dashboard import AGE_BANDS

AgeBand = Literal[
    "under 18", "18-25", "25-35", "35-45", "45-55", "55-65", "65-75", "75-85", "85-95", "95+", "invalid age"
]
CheckName = Literal["freshness", "volume", "duplicates", "reconciliation", "kafka_lag", "quarantine_rate", "dbt"]
Status = Literal["pass", "skipped", "warn", "error"]
assert list(AgeBand.__args__) == AGE_BANDS and set(CheckName.__args__) == set(health.CHECKS)

ENTITY_PATTERN = r"^[A-Za-z0-9_ .-]{1,100}$"
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page (1-1000)")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip")]
Gym = Annotated[int | None, Query(ge=0, le=2_147_483_647, description="Only this gym")]
From = Annotated[date | None, Query(alias="from", description="First day (YYYY-MM-DD), inclusive")]
To = Annotated[date | None, Query(description="Last day (YYYY-MM-DD), inclusive")]
Age = Annotated[AgeBand | None, Query(description="Only members of this age band")]


class Page(BaseModel):
    total: int = Field(description="Rows matching the filters, over all pages")
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last page")


class GymSummaryRow(BaseModel):
    date: date
    gym: int
    mac_address: str
    workout_id: int
    session_id: int
    minutes_in_gym: float
    minutes_exercising: float
    user_id: int
    login: datetime


class GymSummaryPage(Page):
    items: list[GymSummaryRow]


class WorkoutBpmRow(BaseModel):
    workout_id: int
    session_id: int
    user_id: int
    age: str | None
    gender: str | None
    city: str | None
    state: str | None
    min_bpm: float
    avg_bpm: float
    max_bpm: float
    num_recordings: int


class WorkoutBpmPage(Page):
    items: list[WorkoutBpmRow]


class CheckRow(BaseModel):
    checked_at: datetime
    run_id: str
    run_url: str | None
    check_name: str
    entity: str
    layer: str | None
    status: str
    value: float | None
    threshold: float | None
    detail: str | None
    alerted: bool | None = Field(None, description="This run alerted on it (a check that keeps failing alerts once)")


class CheckPage(Page):
    items: list[CheckRow]


class Kpis(BaseModel):
    members: int = Field(description="silver.users registered up to `to` (age band filter)")
    visits: int = Field(description="completed gym visits by login day")
    workouts: int = Field(description="completed workouts by start day (gym: during a visit of it)")
    mean_bpm: float | None = Field(description="mean of gold.workout_bpm_summary.avg_bpm over those workouts")
    quarantined: int = Field(description="silver.quarantine rows by load day")


class SnapshotInfo(BaseModel):
    created_at: str
    rows: dict[str, int]
    source: str | None = None
    seconds: float | None = None


class Problem(BaseModel):
    detail: Any


NO_SNAPSHOT = {
    503: {"model": Problem, "description": "No snapshot yet (the monitor DAG exports one after a transform)"}
}


def _tables() -> dict[str, str]:
    directory = snapshot.current_dir()
    if directory is None:
        raise HTTPException(503, "no snapshot yet: run transform_dbt, then the monitor DAG (it exports the snapshot)")
    return {
        name: "read_parquet('{}')".format(str(directory / f"{name}.parquet").replace("'", "''"))
        for name in snapshot.EXPORTS
    }


def _query(sql: str, params: list) -> list[dict]:
    import duckdb

    with duckdb.connect() as con:
        cursor = con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, map(_utc, row))) for row in cursor.fetchall()]


def _utc(value):
    """Timestamps are UTC throughout (naive in the warehouse): answer them with their offset (RFC 3339)."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def _page(source: str, where: list[str], params: list, order: str, limit: int, offset: int) -> dict:
    condition = " and ".join(where) or "true"
    total = _query(f"select count(*) as n from {source} where {condition}", params)[0]["n"]
    items = _query(
        f"select * from {source} where {condition} order by {order} limit ? offset ?", [*params, limit, offset]
    )
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < total else None,
        "items": items,
    }


def _dates(start: date | None, end: date | None) -> None:
    if start and end and start > end:
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": f"from ({start}) is after to ({end})"}])


def create_app(auth_dependency=None, root_path: str = "") -> FastAPI:
    dependencies = [Depends(auth_dependency)] if auth_dependency else []
    app = FastAPI(
        title="FitLake API",
        version="1",
        description="Read-only JSON over gold and the health history, from the snapshot the monitor DAG exports.",
        dependencies=dependencies,
        docs_url=None,  # Swagger UI loads its assets from a CDN, unreachable here
        redoc_url=None,
        openapi_url=None,  # served below, behind the same auth (FastAPI's own route skips app dependencies)
        servers=[{"url": root_path}] if root_path else None,
    )

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi_schema():
        return app.openapi()

    @app.get("/v1/gym_summary", response_model=GymSummaryPage, responses=NO_SNAPSHOT, tags=["gold"])
    def gym_summary(gym: Gym = None, from_: From = None, to: To = None, limit: Limit = 100, offset: Offset = 0):
        """gold.gym_summary: one row per gym visit x completed workout started during it."""
        _dates(from_, to)
        where, params = [], []
        for column, op, value in (("gym", "=", gym), ("date", ">=", from_), ("date", "<=", to)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        order = "date, gym, mac_address, login, workout_id, session_id"
        return _page(_tables()["gym_summary"], where, params, order, limit, offset)

    @app.get("/v1/workout_bpm_summary", response_model=WorkoutBpmPage, responses=NO_SNAPSHOT, tags=["gold"])
    def workout_bpm_summary(
        user_id: Annotated[int | None, Query(ge=0, le=2**62, description="Only this member")] = None,
        age: Age = None,
        gender: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ):
        """gold.workout_bpm_summary: heart-rate statistics per completed workout."""
        where, params = [], []
        for column, value in (("user_id", user_id), ("age", age), ("gender", gender)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        order = "user_id, workout_id, session_id"
        return _page(_tables()["workout_bpm_summary"], where, params, order, limit, offset)

    @app.get("/v1/kpis", response_model=Kpis, responses=NO_SNAPSHOT, tags=["gold"])
    def kpis(gym: Gym = None, from_: From = None, to: To = None, age: Age = None):
        """The dashboard's KPIs for the same filters."""
        _dates(from_, to)
        t = _tables()

        def where(date_column: str | None, with_gym: bool, with_age: bool = True) -> tuple[str, list]:
            parts, params = [], []
            if with_gym and gym is not None:
                parts.append("gym = ?")
                params.append(gym)
            if date_column and from_ is not None:
                parts.append(f"{date_column} >= ?")
                params.append(from_)
            if date_column and to is not None:
                parts.append(f"{date_column} <= ?")
                params.append(to)
            if with_age and age is not None:
                parts.append("age = ?")
                params.append(age)
            return " and ".join(parts) or "true", params

        def one(sql: str, params: list):
            return _query(sql, params)[0]["v"]

        members_where, members_params = [], []
        if to is not None:
            members_where.append("(registered_on <= ? or registered_on is null)")
            members_params.append(to)
        if age is not None:
            members_where.append("age = ?")
            members_params.append(age)
        members_sql = f"select count(*) as v from {t['members']} where {' and '.join(members_where) or 'true'}"
        visits_where, visits_params = where("date", True)
        workouts_where, workouts_params = where("date", True)
        quarantine_where, quarantine_params = where("date", False, with_age=False)
        return {
            "members": one(members_sql, members_params),
            "visits": one(f"select count(*) as v from {t['visits']} where {visits_where}", visits_params),
            "workouts": one(f"select count(*) as v from {t['workouts']} where {workouts_where}", workouts_params),
            "mean_bpm": one(f"select avg(avg_bpm) as v from {t['workouts']} where {workouts_where}", workouts_params),
            "quarantined": one(
                f"select coalesce(sum(records), 0) as v from {t['quarantine']} where {quarantine_where}",
                quarantine_params,
            ),
        }

    @app.get("/v1/health/checks", response_model=CheckPage, tags=["health"])
    def health_checks(
        check: Annotated[CheckName | None, Query(description="Only this check")] = None,
        entity: Annotated[
            str | None, Query(pattern=r"^[A-Za-z0-9_ .-]{1,100}$", description="Only this entity")
        ] = None,
        status: Annotated[Status | None, Query(description="Only results with this status")] = None,
        since: Annotated[datetime | None, Query(description="Only results checked at or after (ISO 8601, UTC)")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ):
        """The health history, newest first."""
        where, params = [], []
        for column, value in (("check_name", check), ("entity", entity), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("checked_at >= ?")
            params.append(since.replace(tzinfo=None) if since.tzinfo is None else _utc_naive(since))
        return _page(health.history_sql(), where, params, "checked_at desc, check_name, entity", limit, offset)

    @app.get("/v1/health/latest", response_model=CheckPage, tags=["health"])
    def health_latest(status: Annotated[Status | None, Query()] = None, limit: Limit = 1000, offset: Offset = 0):
        """The latest result of every (check, entity)."""
        where, params = ([], []) if status is None else (["status = ?"], [status])
        return _page(health.latest_sql(), where, params, "check_name, entity", limit, offset)

    @app.get("/v1/snapshot", response_model=SnapshotInfo, responses=NO_SNAPSHOT, tags=["gold"])
    def snapshot_info():
        """When the snapshot the API serves was exported, and its row counts."""
        meta = snapshot.metadata()
        if meta is None:
            raise HTTPException(503, "no snapshot yet: run transform_dbt, then the monitor DAG")
        return meta

    return app


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)
