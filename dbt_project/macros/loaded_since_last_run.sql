{#-
    loaded_since_last_run(filter_sql=none)

    The incremental watermark shared by the silver models: on an incremental run, a predicate
    keeping rows whose bronze `load_time` is after the greatest `load_time` already in this
    model (optionally among its rows matching `filter_sql`); on a full refresh, `true`.
    The watermark can only lag behind (when the last rows processed produced no output), and
    every model is written so that processing a row a second time changes nothing.
-#}
{% macro loaded_since_last_run(filter_sql=none) -%}
    {%- if is_incremental() -%}
        load_time > (
            select coalesce(max(w.load_time), '-infinity'::timestamp)
            from {{ this }} as w
            {%- if filter_sql %}
            where {{ filter_sql }}
            {%- endif %}
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
