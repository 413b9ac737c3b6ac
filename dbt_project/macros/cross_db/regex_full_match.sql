{#- regex_full_match(text_expression, pattern): true when the whole text matches the regular
    expression `pattern` (RE2 / Java syntax, the common subset), null for null text. -#}
{% macro regex_full_match(text_expression, pattern) -%}
    {{ return(adapter.dispatch('regex_full_match')(text_expression, pattern)) }}
{%- endmacro %}

{% macro default__regex_full_match(text_expression, pattern) -%}
    regexp_full_match({{ text_expression }}, '{{ pattern }}')
{%- endmacro %}

{#- rlike matches anywhere in the text: anchor the whole pattern -#}
{% macro spark__regex_full_match(text_expression, pattern) -%}
    ({{ text_expression }} rlike '^(?:{{ pattern }})$')
{%- endmacro %}
