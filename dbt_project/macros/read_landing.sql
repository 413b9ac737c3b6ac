{#-
    read_landing(source_name, table_name, loaded_relation=none)

    Returns a parenthesised select over the landing files of a source table, with the source
    columns cast to the types declared in __sources.yml plus `source_file`.

    * The glob is the source's `external_location`; the file list is resolved with DuckDB's
      glob() when the model runs, so an empty directory is not an error: it yields an empty,
      typed relation instead of "No files found that match the pattern".
    * With `loaded_relation` (the bronze table itself, on incremental runs) only files whose
      path is not yet in `loaded_relation.source_file` are read. Files are immutable, so this
      makes a rerun over the same landing zone add nothing.
-#}
{% macro read_landing(source_name, table_name, loaded_relation=none) -%}
    {%- set src = source(source_name, table_name) -%}
    {%- set pattern = (src.external or '') | replace("'", "") -%}
    {%- set node = graph.sources.get('source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name) if execute else none -%}
    {%- set columns = node.columns.values() | list if node else [] -%}
    {%- set files = [] -%}
    {%- if execute -%}
        {%- set file_query -%}
            select file from glob('{{ pattern }}')
            {%- if loaded_relation is not none %}
            where file not in (select distinct l.source_file from {{ loaded_relation }} as l)
            {%- endif %}
            order by file
        {%- endset -%}
        {%- set files = run_query(file_query).columns[0].values() | list -%}
    {%- endif -%}
    (
        select
            {%- for column in columns %}
            cast({{ adapter.quote(column.name) if files | length > 0 else 'null' }} as {{ column.data_type }}) as {{ adapter.quote(column.name) }},
            {%- endfor %}
            {%- if files | length > 0 %}
            filename as source_file
        from read_parquet(
            [{%- for f in files %}'{{ f }}'{{ ', ' if not loop.last }}{% endfor -%}],
            filename = true
        )
            {%- else %}
            cast(null as varchar) as source_file
        where false
            {%- endif %}
    )
{%- endmacro %}
