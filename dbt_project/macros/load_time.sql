{#- The load time of a bronze row: the start of the loading transaction, as a naive UTC timestamp. -#}
{% macro load_time() -%}
    {{ current_timestamp_utc() }}
{%- endmacro %}
