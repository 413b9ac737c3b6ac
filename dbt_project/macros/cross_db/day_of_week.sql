{#- day_of_week(date_expression): 1 = Sunday ... 7 = Saturday (the contract's date_lookup). -#}
{% macro day_of_week(date_expression) -%}
    {{ return(adapter.dispatch('day_of_week')(date_expression)) }}
{%- endmacro %}

{#- DuckDB counts 0 = Sunday -#}
{% macro default__day_of_week(date_expression) -%}
    (dayofweek({{ date_expression }}) + 1)
{%- endmacro %}

{% macro spark__day_of_week(date_expression) -%}
    dayofweek({{ date_expression }})
{%- endmacro %}
