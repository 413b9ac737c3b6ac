{#- sql_type(data_type): the engine's name for a type written as in models/bronze/__sources.yml
    (bigint, integer, varchar, timestamp, ...). -#}
{% macro sql_type(data_type) -%}
    {{ return(adapter.dispatch('sql_type')(data_type)) }}
{%- endmacro %}

{% macro default__sql_type(data_type) -%}
    {{ data_type }}
{%- endmacro %}

{#- Spark's varchar needs a length; its unbounded text type is string -#}
{% macro spark__sql_type(data_type) -%}
    {{ 'string' if data_type | lower in ['varchar', 'text'] else data_type }}
{%- endmacro %}
