{#- The load time of a bronze row: the start of the loading transaction, as a naive UTC timestamp. -#}
{% macro load_time() -%}
    timezone('UTC', current_timestamp)
{%- endmacro %}
