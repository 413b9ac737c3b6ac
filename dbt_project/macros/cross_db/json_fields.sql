{#-
    Reading fields of a JSON text, parsing it once per row:

    json_document(text_expression, paths)
        The parsed document holding `paths` (JSONPath, e.g. '$.address.city'): null when the
        text is null or not valid JSON.
    json_document_field(document_expression, paths, path)
        One field of it as text, the way it is written in the JSON: a string without its quotes,
        a number as its digits (never through a float: 1700050800.123456 stays exact), an object
        or array as JSON text; null when the field is missing or null (or the document is null,
        or not an object).
    json_is_object(text_expression)
        True when the text is a JSON object (false for other JSON, invalid JSON and null).
-#}
{% macro json_document(text_expression, paths) -%}
    {{ return(adapter.dispatch('json_document')(text_expression, paths)) }}
{%- endmacro %}

{% macro json_document_field(document_expression, paths, path) -%}
    {{ return(adapter.dispatch('json_document_field')(document_expression, paths, path)) }}
{%- endmacro %}

{% macro json_is_object(text_expression) -%}
    {{ return(adapter.dispatch('json_is_object')(text_expression)) }}
{%- endmacro %}


{#- DuckDB: all the paths in one json_extract_string call (one parse), a list of texts; try():
    invalid JSON yields null instead of failing the statement -#}
{% macro default__json_document(text_expression, paths) -%}
    try(json_extract_string({{ text_expression }}, [{% for p in paths %}'{{ p }}'{{ ', ' if not loop.last }}{% endfor %}]))
{%- endmacro %}

{% macro default__json_document_field(document_expression, paths, path) -%}
    {{ document_expression }}[{{ paths.index(path) + 1 }}]
{%- endmacro %}

{% macro default__json_is_object(text_expression) -%}
    (coalesce(try(json_type({{ text_expression }})), '') = 'OBJECT')
{%- endmacro %}


{#- Spark: a VARIANT (parse_json keeps a number as a decimal whenever it fits one, so its text
    is the written digits); try_parse_json yields null for invalid JSON -#}
{% macro spark__json_document(text_expression, paths) -%}
    try_parse_json({{ text_expression }})
{%- endmacro %}

{% macro spark__json_document_field(document_expression, paths, path) -%}
    try_variant_get({{ document_expression }}, '{{ path }}', 'string')
{%- endmacro %}

{% macro spark__json_is_object(text_expression) -%}
    coalesce(schema_of_variant(try_parse_json({{ text_expression }})) like 'OBJECT%', false)
{%- endmacro %}
