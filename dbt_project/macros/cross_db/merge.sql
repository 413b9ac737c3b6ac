{#-
    The incremental merge on Spark (Delta Lake), driven by the same `merge_clauses` model config as
    dbt-duckdb (overrides dbt-spark's spark__get_merge_sql, which knows only "update all, insert
    all" and silently ignores merge_clauses, so user_profile's CDC delete would be lost):

        merge_clauses:
          when_matched:     [{condition?, action: update | delete | do_nothing,
                              mode: by_name | explicit, update: {include: [...]}}, ...]
          when_not_matched: [{condition?, action: insert | do_nothing,
                              mode: by_name | explicit, insert: {columns: [...], values: [...]}}, ...]

    Clauses apply in order, the first whose condition holds wins, as in DuckDB. Spark has no
    DO NOTHING: such a clause is left out and its condition excludes the rows from the clauses
    after it. `by_name` is Delta's UPDATE SET * / INSERT * (columns matched by name). Without
    merge_clauses: update every column when matched, insert when not (dbt-spark's default).
-#}
{% macro spark__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) -%}
    {%- set predicates = [] if incremental_predicates is none else [] + incremental_predicates -%}
    {%- set keys = [] if unique_key is none else ([unique_key] if unique_key is string else unique_key) -%}
    {%- for key in keys -%}
        {%- do predicates.append('DBT_INTERNAL_SOURCE.' ~ quote_column(key) ~ ' = DBT_INTERNAL_DEST.' ~ quote_column(key)) -%}
    {%- endfor -%}
    {%- if not predicates -%}{%- do predicates.append('false') -%}{%- endif -%}

    {%- set merge_clauses = config.get('merge_clauses', {}) or {} -%}
    {%- set when_matched = merge_clauses.get('when_matched', [{'action': 'update', 'mode': 'by_name'}]) -%}
    {%- set when_not_matched = merge_clauses.get('when_not_matched', [{'action': 'insert', 'mode': 'by_name'}]) -%}
    {%- set sql_header = config.get('sql_header', none) -%}

    {{ sql_header if sql_header is not none }}

    merge into {{ target }} as DBT_INTERNAL_DEST
    using {{ source }} as DBT_INTERNAL_SOURCE
    on ({{ predicates | join(') and (') }})
    {{- _spark_merge_clauses('when matched', when_matched) }}
    {{- _spark_merge_clauses('when not matched', when_not_matched) }}
{%- endmacro %}


{% macro _spark_merge_clauses(keyword, clauses) -%}
    {%- set ns = namespace(excluded=[], stopped=false) -%}
    {%- for clause in clauses -%}
        {%- if not ns.stopped -%}
        {%- set condition = clause.get('condition') -%}
        {%- if condition is not none and condition is not string -%}
            {%- set condition = '(' ~ condition | join(') and (') ~ ')' -%}
        {%- endif -%}
        {%- set conditions = ns.excluded + ([condition] if condition else []) -%}
        {%- set action = clause.get('action') -%}
        {%- if action == 'do_nothing' -%}
            {%- if condition -%}
                {%- do ns.excluded.append('not coalesce(' ~ condition ~ ', false)') -%}
            {%- else -%}
                {%- set ns.stopped = true -%}
            {%- endif -%}
        {%- else %}
    {{ keyword }}{% if conditions %} and ({{ conditions | join(') and (') }}){% endif %} then
        {%- if action == 'delete' %} delete
        {%- elif action == 'update' and clause.get('mode', 'by_name') == 'by_name' %} update set *
        {%- elif action == 'update' and clause.get('mode') == 'explicit' %} update set
            {%- for column in clause.get('update', {}).get('include', []) %}
        {{ quote_column(column) }} = DBT_INTERNAL_SOURCE.{{ quote_column(column) }}{{ ',' if not loop.last }}
            {%- endfor %}
        {%- elif action == 'insert' and clause.get('mode', 'by_name') == 'by_name' %} insert *
        {%- elif action == 'insert' and clause.get('mode') == 'explicit' %}
        insert ({% for column in clause.get('insert', {}).get('columns', []) %}{{ quote_column(column) }}{{ ', ' if not loop.last }}{% endfor %})
        values ({{ clause.get('insert', {}).get('values', []) | join(', ') }})
        {%- else -%}
            {{ exceptions.raise_compiler_error(
                "merge_clauses: " ~ keyword ~ " " ~ clause ~ " is not supported on Spark"
                ~ " (actions: update/insert by_name or explicit, delete, do_nothing)") }}
        {%- endif -%}
        {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}
