{#-
    landed_at(table_name)

    The `loaded_at_query` of the landing sources' freshness: when a file of the entity last landed
    (the newest modification time among its landing files, UTC). A file is renamed into place once
    complete and never rewritten, so its modification time is when it landed. No file yet gives
    null, which dbt reports as an error ("no data landed yet").
-#}
{% macro landed_at(table_name) -%}
    {%- set node = graph.sources.get('source.' ~ project_name ~ '.landing.' ~ table_name) -%}
    {%- set pattern = node.meta.external_location | replace("'", "''") -%}
    {%- set files = run_query("select file from glob('" ~ pattern ~ "')").columns[0].values() | list if execute else [] -%}
    {%- if files | length > 0 -%}
        select max(timezone('UTC', last_modified)) from read_blob('{{ pattern }}')
    {%- else -%}
        select cast(null as timestamp)
    {%- endif -%}
{%- endmacro %}
