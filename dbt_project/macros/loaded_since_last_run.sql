{#-
    loaded_since_last_run(filter_sql=none)

    The incremental watermark shared by the silver models: on an incremental run, a predicate
    keeping rows whose bronze `load_time` is after the greatest `load_time` already in this
    model (optionally among its rows matching `filter_sql`); on a full refresh, `true`.

    The watermark is read when the model runs and inlined as a literal, so DuckDB can prune
    row groups by their load_time statistics instead of scanning all history (a scalar
    subquery would be planned as a join over every row). In unit tests, where `this` is a
    fixture, the subquery form is used.

    The watermark can only lag behind (when the last rows processed produced no output), and
    every model is written so that processing a row a second time changes nothing.
-#}
{% macro loaded_since_last_run(filter_sql=none) -%}
    {%- if not is_incremental() -%}
        true
    {%- else -%}
        {%- set watermark_query -%}
            {#- an empty table: every row is new (a date before any load, valid on every engine) -#}
            select coalesce(cast(max(w.load_time) as string), '1900-01-01 00:00:00')
            from {{ this }} as w
            {%- if filter_sql %}
            where {{ filter_sql }}
            {%- endif %}
        {%- endset -%}
        {%- if execute and model.resource_type == 'model' -%}
            {%- set watermark = run_query(watermark_query).columns[0].values()[0] -%}
            load_time > cast('{{ watermark }}' as timestamp)
        {%- else -%}
            load_time > cast(({{ watermark_query }}) as timestamp)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
