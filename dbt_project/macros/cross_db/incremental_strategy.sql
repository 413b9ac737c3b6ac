{#-
    dbt-spark's incremental materialization accepts only append, merge, insert_overwrite and
    microbatch, and builds their SQL in these two (non-dispatched) macros. The models also use
    delete+insert (users, gym_logs, completed_workouts, workout_bpm); these overrides (a root
    project macro wins over the adapter's) accept it for Delta tables and build it with dbt's
    get_delete_insert_merge_sql (spark__get_delete_insert_merge_sql in delete_insert.sql). Every
    other strategy goes to dbt-spark's own macros unchanged.
-#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) -%}
    {%- if raw_strategy == 'delete+insert' -%}
        {%- if file_format not in ['delta'] -%}
            {{ exceptions.raise_compiler_error(
                "incremental_strategy delete+insert needs file_format delta on Spark, got " ~ file_format) }}
        {%- endif -%}
        {{ return(raw_strategy) }}
    {%- endif -%}
    {{ return(dbt.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
{%- endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) -%}
    {%- if strategy == 'delete+insert' -%}
        {{ get_delete_insert_merge_sql(
            target, source, unique_key, adapter.get_columns_in_relation(target), incremental_predicates) }}
    {%- else -%}
        {{ dbt.dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) }}
    {%- endif -%}
{%- endmacro %}
