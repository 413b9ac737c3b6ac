{#-
    delete+insert (dbt's get_delete_insert_merge_sql): every row of the target whose unique_key
    is among the new rows' keys is deleted, then every new row is inserted.

    DuckDB: delete+insert for DuckDB with a composite unique_key, deleting through the *distinct* keys of
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


{#-
    Spark (Delta Lake): dbt-spark has no delete+insert strategy (incremental_strategy.sql wires
    it in) and Delta's DELETE takes no subquery. One MERGE does both, atomically: its source is
    the new rows plus one "key row" per distinct key; a key row deletes the target rows of its
    key, a new row never matches (the ON clause requires a key row) and is inserted. Each target
    row matches at most one key row, as MERGE requires, however many new rows share its key.
-#}
{% macro spark__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set quoted_keys = [] -%}
    {%- for key in keys %}{% do quoted_keys.append(quote_column(key)) %}{% endfor -%}
    {%- set columns = dest_columns | map(attribute='quoted') | list -%}

    merge into {{ target }} as DBT_INTERNAL_DEST
    using (
        select false as dbt_is_key_row, {{ columns | join(', ') }}
        from {{ source }}

        union all

        select distinct
            true as dbt_is_key_row,
            {%- for column in dest_columns %}
            {{ column.quoted if column.quoted in quoted_keys else 'null' }} as {{ column.quoted }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ source }}
    ) as DBT_INTERNAL_SOURCE
    on
        DBT_INTERNAL_SOURCE.dbt_is_key_row
        {%- for key in quoted_keys %}
        and DBT_INTERNAL_SOURCE.{{ key }} = DBT_INTERNAL_DEST.{{ key }}
        {%- endfor %}
        {%- for predicate in incremental_predicates or [] %}
        and {{ predicate }}
        {%- endfor %}
    when matched then delete
    when not matched and not DBT_INTERNAL_SOURCE.dbt_is_key_row then
        insert ({{ columns | join(', ') }})
        values ({% for column in columns %}DBT_INTERNAL_SOURCE.{{ column }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}
