{#- date_from_mm_dd_yyyy(text_expression): the DATE written as MM/dd/yyyy, or null when the text
    is not a valid date in that format (02/30/1990, 13/45/1990). The caller checks the exact
    shape (two, two and four digits) first: both engines accept one-digit months. -#}
{% macro date_from_mm_dd_yyyy(text_expression) -%}
    {{ return(adapter.dispatch('date_from_mm_dd_yyyy')(text_expression)) }}
{%- endmacro %}

{% macro default__date_from_mm_dd_yyyy(text_expression) -%}
    cast(try_strptime({{ text_expression }}, '%m/%d/%Y') as date)
{%- endmacro %}

{#- null on a date that does not parse: ANSI mode is off (dbt-spark) and the profile sets
    spark.sql.legacy.timeParserPolicy = CORRECTED -#}
{% macro spark__date_from_mm_dd_yyyy(text_expression) -%}
    to_date({{ text_expression }}, 'MM/dd/yyyy')
{%- endmacro %}
