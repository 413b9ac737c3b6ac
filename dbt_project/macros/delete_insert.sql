{#-
    delete+insert for DuckDB with a composite unique_key, deleting through the *distinct* keys of
    the new rows (overrides dbt-duckdb's duckdb__get_delete_insert_merge_sql; dispatch prefers
    the root project).

    dbt-duckdb joins the target with every new row (`delete ... using <new rows>`): when a key
    has many new rows (workout_bpm rebuilds a workout as ~1,800 readings) the hash join probes a
    chain of that many entries per target row, and an incremental workout_bpm run spent 2.6 s in
    the delete alone at 7 M rows. Joining the distinct keys instead makes it one probe per row.
    Same rows deleted and inserted, so the result is unchanged.
-#}
{% macro duckdb__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) -%}

    {%- set dest_cols_csv = get_quoted_csv(dest_columns | map(attribute="name")) -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}

    {% if keys %}
        delete from {{ target }} as DBT_INCREMENTAL_TARGET
        using (
            select distinct {{ keys | join(', ') }}
            from {{ source }}
        ) as DBT_INCREMENTAL_KEYS
        where (
            {%- for key in keys %}
            DBT_INCREMENTAL_KEYS.{{ key }} = DBT_INCREMENTAL_TARGET.{{ key }}
            {{- " and" if not loop.last }}
            {%- endfor %}
            {%- for predicate in incremental_predicates or [] %}
            and {{ predicate }}
            {%- endfor %}
        );
    {% endif %}

    insert into {{ target }} ({{ dest_cols_csv }})
    (
        select {{ dest_cols_csv }}
        from {{ source }}
    )

{%- endmacro %}
