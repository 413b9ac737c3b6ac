{#-
    epoch_seconds(text_expression) and seconds_to_timestamp(decimal_expression)

    Epoch seconds (int or float, given as JSON text) to TIMESTAMP with microsecond precision.
    epoch_seconds casts the text to DECIMAL(18, 6), never to a float, so 1700054500.123456 stays
    exact (a float32 is only exact to 128 s at 1.7e9 s); more than six decimals round to the
    microsecond; exponent notation (1.7e9) is accepted; text that is not a number, or an epoch of
    1e12 s or more, yields null (the caller quarantines it). seconds_to_timestamp builds the
    microseconds as whole seconds times 10^6 plus the fraction times 10^6, exact 64-bit integer
    arithmetic (one DECIMAL product would need 128-bit arithmetic, several times slower).
-#}
{% macro epoch_seconds(text_expression) -%}
    try_cast({{ text_expression }} as decimal(18, 6))
{%- endmacro %}

{% macro seconds_to_timestamp(decimal_expression) -%}
    {{ timestamp_from_epoch_us(
        'cast(floor(' ~ decimal_expression ~ ') as bigint) * 1000000 + cast((' ~ decimal_expression
        ~ ' - floor(' ~ decimal_expression ~ ')) * 1000000 as bigint)'
    ) }}
{%- endmacro %}
