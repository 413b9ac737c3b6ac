{#- timestamp_from_epoch_us(bigint_expression): the TIMESTAMP that many microseconds after
    1970-01-01 00:00:00 UTC (exact: no float on the way). -#}
{% macro timestamp_from_epoch_us(bigint_expression) -%}
    {{ return(adapter.dispatch('timestamp_from_epoch_us')(bigint_expression)) }}
{%- endmacro %}

{% macro default__timestamp_from_epoch_us(bigint_expression) -%}
    make_timestamp({{ bigint_expression }})
{%- endmacro %}

{% macro spark__timestamp_from_epoch_us(bigint_expression) -%}
    timestamp_micros({{ bigint_expression }})
{%- endmacro %}
