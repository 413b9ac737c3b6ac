{#-
    minutes_between(start_expression, end_expression)

    round((end - start) / 60 s, 2) computed exactly: the difference in microseconds is an
    integer, rounded half up to hundredths of a minute with integer arithmetic and returned as
    DECIMAL(18, 2), so no binary fraction (75.005 as 75.00499...) can round the wrong way.
    For end >= start (the models only call it so).
-#}
{% macro minutes_between(start_expression, end_expression) -%}
    cast(
        cast({{ integer_divide(
            '(' ~ epoch_microseconds(end_expression) ~ ' - ' ~ epoch_microseconds(start_expression) ~ ') + 300000',
            '600000'
        ) }} as decimal(18, 0))
        * 0.01
        as decimal(18, 2)
    )
{%- endmacro %}
