{#- ordering_tuple(expressions): one value that orders like the expressions compared left to
    right (a struct), e.g. for max_by(value, ordering_tuple(['a', 'b'])). -#}
{% macro ordering_tuple(expressions) -%}
    {{ return(adapter.dispatch('ordering_tuple')(expressions)) }}
{%- endmacro %}

{% macro default__ordering_tuple(expressions) -%}
    row({{ expressions | join(', ') }})
{%- endmacro %}

{% macro spark__ordering_tuple(expressions) -%}
    struct({{ expressions | join(', ') }})
{%- endmacro %}
