"""Task bodies of the landing DAGs: call the `ingestion` package, log its summary, publish the Asset.

A task lands one entity (a SQL table or a Kafka topic). The run's Param picks which entities land;
the others are skipped. An entity that yields no new rows is skipped too, so no Asset event is
published and the transformation DAG is not woken up for nothing. The source's credentials come from
its Airflow connection when there is one (`fitlake_common.connections`). A configuration error fails
the task at once: retrying cannot fix it.
"""

from __future__ import annotations

import logging

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from fitlake_common.assets import KAFKA_ASSETS, SQL_ASSETS

log = logging.getLogger(__name__)

ALL = "all"


def chosen(param_value, entity: str) -> bool:
    """A Param value of `all`, empty, a name, or a list of names selects `entity`."""
    if param_value in (None, "", ALL):
        return True
    if isinstance(param_value, (list, tuple)):
        return ALL in param_value or entity in param_value
    return param_value == entity


def land(source: str, entity: str, context) -> dict:
    from fitlake_common.connections import landing_settings
    from ingestion.errors import ConfigError

    asset = (SQL_ASSETS if source == "sql" else KAFKA_ASSETS)[entity]

    choice = context["params"].get("table" if source == "sql" else "topic")
    if not chosen(choice, entity):
        raise AirflowSkipException(f"{source}:{entity} not chosen for this run (param: {choice!r})")

    try:
        settings, origin = landing_settings(source)
        log.info("%s credentials: %s", source, origin)
        if source == "sql":
            from ingestion.land_sql import land_sql_tables

            [summary] = land_sql_tables(settings, [entity])
        else:
            from ingestion.land_kafka import land_kafka_topics

            [summary] = land_kafka_topics(settings, [entity])
    except ConfigError as error:
        raise AirflowFailException(f"{source}:{entity}: {error}") from error

    log.info("landed %s", summary.line())
    for path in summary.paths:
        log.info("  file %s", path)
    if summary.rows == 0:
        raise AirflowSkipException(f"{source}:{entity}: nothing new to land; no Asset event published")
    result = summary.as_dict()
    result.pop("paths", None)  # file lists can be long: they are in the log, not in the Asset event
    context["outlet_events"][asset].extra = result
    return summary.as_dict()
