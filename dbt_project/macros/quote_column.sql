{#- quote_column(name): a column name quoted for the target engine ("time" in DuckDB, `time` in
    Spark). Names in YAML may be written DuckDB-style, '"time"': those quotes are replaced, since
    in Spark with ANSI mode off (dbt-spark's setting) "time" is the string 'time'. -#}
{% macro quote_column(name) -%}
    {{- adapter.quote(name | replace('"', '') | trim) -}}
{%- endmacro %}
