"""The Airflow Assets the landing DAGs publish and the transformation DAG is scheduled on."""

from __future__ import annotations

from functools import reduce
from operator import or_

from airflow.sdk import Asset

SQL_TABLES = ("registered_users", "gym_logins")
KAFKA_TOPICS = ("user_info", "workout", "bpm")


def landing_asset(source: str, entity: str) -> Asset:
    """`fitlake://landing/sql/registered_users`: the Parquet of one source entity in the landing zone."""
    return Asset(uri=f"fitlake://landing/{source}/{entity}", name=f"landing_{source}_{entity}", group="landing")


SQL_ASSETS = {table: landing_asset("sql", table) for table in SQL_TABLES}
KAFKA_ASSETS = {topic: landing_asset("kafka", topic) for topic in KAFKA_TOPICS}
ALL_LANDING_ASSETS = [*SQL_ASSETS.values(), *KAFKA_ASSETS.values()]
# The transformation DAG's schedule: an event on any of them (AssetAny).
ANY_LANDING_ASSET = reduce(or_, ALL_LANDING_ASSETS)

# Published by transform_dbt when a build succeeded: gold (and silver) are current. The monitor DAG
# and anything that snapshots the warehouse for readers schedule on it.
WAREHOUSE_GOLD_ASSET = Asset(uri="fitlake://warehouse/gold", name="warehouse_gold", group="warehouse")
