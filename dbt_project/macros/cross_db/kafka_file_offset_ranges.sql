{#-
    kafka_file_offset_ranges(files)

    A parenthesised select, one row per Kafka landing file of `files`: file_name, topic and
    max_topic, partition and max_partition, first_offset and last_offset (least and greatest in
    the file), messages (rows). kafka_files_needing_dedup decides from these which files may
    repeat a message. Null bounds mean "unknown" (the file is then de-duplicated row by row).
-#}
{% macro kafka_file_offset_ranges(files) -%}
    {{ return(adapter.dispatch('kafka_file_offset_ranges')(files)) }}
{%- endmacro %}

{#- DuckDB: from the Parquet footers (row-group statistics), so no data is scanned -#}
{% macro default__kafka_file_offset_ranges(files) -%}
    (
        with

        stats as (
            select
                file_name,
                path_in_schema,
                row_group_num_rows,
                stats_min_value,
                stats_max_value
            from parquet_metadata([{%- for f in files %}'{{ f | replace("'", "''") }}'{{ ', ' if not loop.last }}{% endfor -%}])
            where path_in_schema in ('topic', 'partition', 'offset')
        )

        select
            file_name,
            min(stats_min_value) filter (where path_in_schema = 'topic') as topic,
            max(stats_max_value) filter (where path_in_schema = 'topic') as max_topic,
            min(try_cast(stats_min_value as integer)) filter (where path_in_schema = 'partition') as "partition",
            max(try_cast(stats_max_value as integer)) filter (where path_in_schema = 'partition') as max_partition,
            min(try_cast(stats_min_value as bigint)) filter (where path_in_schema = 'offset') as first_offset,
            max(try_cast(stats_max_value as bigint)) filter (where path_in_schema = 'offset') as last_offset,
            sum(row_group_num_rows) filter (where path_in_schema = 'offset') as messages
        from stats
        group by file_name
    )
{%- endmacro %}

{#- Spark SQL has no footer reader: one aggregate over the three key columns of the new files -#}
{% macro spark__kafka_file_offset_ranges(files) -%}
    (
        select
            {{ parquet_scan_file_name() }} as file_name,
            min(topic) as topic,
            max(topic) as max_topic,
            min(`partition`) as `partition`,
            max(`partition`) as max_partition,
            min(`offset`) as first_offset,
            max(`offset`) as last_offset,
            count(*) as messages
        from {{ parquet_files_scan(files) }}
        group by 1
    )
{%- endmacro %}
