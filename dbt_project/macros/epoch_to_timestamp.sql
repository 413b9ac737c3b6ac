{#-
    epoch_to_timestamp(text_expression)

    Epoch seconds (int or float, given as JSON text) to TIMESTAMP with microsecond precision.
    The text is cast to DECIMAL(18, 6), never to a float, so 1700054500.123456 stays exact
    (a float32 is only exact to 128 s at 1.7e9 s); more than six decimals round to the
    microsecond. Exponent notation (1.7e9) is accepted. The microseconds are whole seconds
    times 10^6 plus the fraction times 10^6, both exact 64-bit integer arithmetic (a single
    DECIMAL product would need 128-bit arithmetic and is several times slower). Text that is
    not a number, or an epoch of 1e12 s or more, yields null (the caller quarantines it).
-#}
{% macro epoch_to_timestamp(text_expression) -%}
    make_timestamp(
        cast(floor(try_cast({{ text_expression }} as decimal(18, 6))) as bigint) * 1000000
        + cast(
            (
                try_cast({{ text_expression }} as decimal(18, 6))
                - floor(try_cast({{ text_expression }} as decimal(18, 6)))
            ) * 1000000 as bigint
        )
    )
{%- endmacro %}
