{#-
    Reading the landing zone.

    landing_files(source_name, table_name, loaded_relation=none)
        The landing files of a source table, listed when the model runs (landing_file_listing: an
        empty or missing directory is simply an empty list, not "No files found"). With
        `loaded_relation` (the bronze table itself, on incremental runs) only files whose path is
        not yet in its `source_file`: files are immutable, so a rerun adds nothing.

    read_landing_files(source_name, table_name, files)
        A parenthesised select over `files` with the source columns cast to the types declared
        in __sources.yml plus `source_file`; an empty, typed relation when `files` is empty.

    read_landing(source_name, table_name, loaded_relation=none)
        Both in one.
-#}
{% macro landing_files(source_name, table_name, loaded_relation=none) -%}
    {%- set src = source(source_name, table_name) -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {#- the glob is the source's meta.external_location (dbt-duckdb also exposes it as src.external) -#}
    {%- set node = graph.sources.get('source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name) -%}
    {%- set location = (node.config.meta or {}).get('external_location') or node.meta.get('external_location') -%}
    {%- if not location -%}
        {{ exceptions.raise_compiler_error(
            "source " ~ source_name ~ "." ~ table_name ~ " has no meta.external_location (the glob of its landing files)") }}
    {%- endif -%}
    {%- set pattern = location | replace("'", "") -%}
    {%- set file_query -%}
        select file from {{ landing_file_listing(pattern) }}
        {%- if loaded_relation is not none %}
        where file not in (select distinct l.source_file from {{ loaded_relation }} as l)
        {%- endif %}
        order by file
    {%- endset -%}
    {{ return(run_query(file_query).columns[0].values() | list) }}
{%- endmacro %}


{% macro read_landing_files(source_name, table_name, files) -%}
    {%- set node = graph.sources.get('source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name) if execute else none -%}
    {%- set columns = node.columns.values() | list if node else [] -%}
    (
        select
            {%- for column in columns %}
            cast({{ adapter.quote(column.name) if files | length > 0 else 'null' }} as {{ sql_type(column.data_type) }}) as {{ adapter.quote(column.name) }},
            {%- endfor %}
            {%- if files | length > 0 %}
            {{ parquet_scan_file_name() }} as source_file
        from {{ parquet_files_scan(files) }}
            {%- else %}
            cast(null as string) as source_file
        where false
            {%- endif %}
    )
{%- endmacro %}


{% macro read_landing(source_name, table_name, loaded_relation=none) -%}
    {{ read_landing_files(source_name, table_name, landing_files(source_name, table_name, loaded_relation)) }}
{%- endmacro %}


{#-
    kafka_files_needing_dedup(files, loaded_relation=none)

    Of the new Kafka `files`, those that may hold a message (topic, partition, offset) twice:
    a file whose offsets repeat, whose offset range overlaps another new file of the same topic
    and partition, or (incremental) overlaps a range already loaded. The ranges come from the
    Parquet footers (row-group statistics), so no data is scanned; a file without statistics
    counts as needing de-duplication (kafka_file_offset_ranges). (Against bronze, a file needs de-duplication only when a
    loaded message of its topic and partition has an offset inside the file's range, which is
    what can repeat; comparing whole loaded file ranges would also flag files filling a gap.)
    Landing is exactly-once, so normally this is empty and
    bronze appends the files without a row-level de-duplication pass.
-#}
{% macro kafka_files_needing_dedup(files, loaded_relation=none) -%}
    {%- if not execute or files | length == 0 -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        with

        file_ranges as (
            select * from {{ kafka_file_offset_ranges(files) }}
        ),

        suspect as (
            -- no usable statistics, several topics or partitions, or repeated offsets in a file
            select file_name
            from file_ranges
            where
                topic is null or first_offset is null or last_offset is null or {{ adapter.quote('partition') }} is null
                or topic <> max_topic or {{ adapter.quote('partition') }} <> max_partition
                or messages > last_offset - first_offset + 1

            union

            select a.file_name
            from file_ranges as a
            inner join file_ranges as b
                on
                    a.topic = b.topic
                    and a.{{ adapter.quote('partition') }} = b.{{ adapter.quote('partition') }}
                    and a.file_name <> b.file_name
                    and a.first_offset <= b.last_offset
                    and b.first_offset <= a.last_offset

        )

        select
            file_name,
            'suspect' as kind,
            cast(null as string) as topic,
            cast(null as integer) as {{ adapter.quote('partition') }},
            cast(null as bigint) as first_offset,
            cast(null as bigint) as last_offset
        from suspect

        union all

        select file_name, 'range', topic, {{ adapter.quote('partition') }}, first_offset, last_offset
        from file_ranges
        where file_name not in (select s.file_name from suspect as s)
        order by file_name
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- set needing = [] -%}
    {%- set ranges = [] -%}
    {%- for row in rows -%}
        {%- do (needing if row[1] == 'suspect' else ranges).append(row) -%}
    {%- endfor -%}
    {%- set needing = needing | map(attribute=0) | list -%}
    {%- if loaded_relation is not none and ranges | length > 0 -%}
        {#- a file needs de-duplication against bronze when a loaded message of its topic and
            partition has an offset inside its range (only those can repeat one of its messages).
            One probe per file with literal bounds, so DuckDB skips bronze row groups by their
            offset statistics instead of scanning (or grouping) all of bronze on every run. -#}
        {%- set overlap_query -%}
            {%- for r in ranges %}
            select '{{ escape_single_quotes(r[0]) }}' as file_name
            where exists (
                select 1
                from {{ loaded_relation }} as l
                where
                    l.topic = '{{ escape_single_quotes(r[2]) }}'
                    and l.{{ adapter.quote('partition') }} = {{ r[3] | int }}
                    and l.{{ adapter.quote('offset') }} between {{ r[4] | int }} and {{ r[5] | int }}
            )
            {{- "\n            union all" if not loop.last }}
            {%- endfor %}
        {%- endset -%}
        {%- set needing = needing + (run_query(overlap_query).columns[0].values() | list) -%}
    {%- endif -%}
    {{ return(needing | sort) }}
{%- endmacro %}
