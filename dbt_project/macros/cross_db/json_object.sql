{#- json_object(columns): the JSON text of an object with these columns as keys, in this order,
    null values written as null, no spaces: {"user_id":null,"device_id":300099,...}. The text is
    the same on every engine as long as the columns are numbers or strings (cast timestamps to
    string first). -#}
{% macro json_object(columns) -%}
    {{ return(adapter.dispatch('json_object')(columns)) }}
{%- endmacro %}

{% macro default__json_object(columns) -%}
    cast(to_json(struct_pack({{ columns | join(', ') }})) as string)
{%- endmacro %}

{#- to_json leaves null fields out unless told otherwise -#}
{% macro spark__json_object(columns) -%}
    to_json(
        named_struct({% for c in columns %}'{{ c }}', {{ c }}{{ ', ' if not loop.last }}{% endfor %}),
        map('ignoreNullFields', 'false')
    )
{%- endmacro %}
