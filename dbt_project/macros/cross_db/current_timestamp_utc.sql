{#- current_timestamp_utc(): the current time as a naive UTC TIMESTAMP (the start of the
    transaction in DuckDB, of the query in Spark). -#}
{% macro current_timestamp_utc() -%}
    {{ return(adapter.dispatch('current_timestamp_utc')()) }}
{%- endmacro %}

{% macro default__current_timestamp_utc() -%}
    timezone('UTC', current_timestamp)
{%- endmacro %}

{#- the profile sets spark.sql.session.timeZone = UTC, so the session's timestamps are UTC -#}
{% macro spark__current_timestamp_utc() -%}
    current_timestamp()
{%- endmacro %}
