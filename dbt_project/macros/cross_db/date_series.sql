{#- date_series(start_date, end_date): a parenthesised select of one column `date`, one row per
    day from start_date to end_date inclusive (both 'yyyy-mm-dd' strings). -#}
{% macro date_series(start_date, end_date) -%}
    {{ return(adapter.dispatch('date_series')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__date_series(start_date, end_date) -%}
    (
        select cast(generate_series as date) as date
        from generate_series(date '{{ start_date }}', date '{{ end_date }}', interval 1 day)
    )
{%- endmacro %}

{% macro spark__date_series(start_date, end_date) -%}
    (
        select explode(sequence(date '{{ start_date }}', date '{{ end_date }}', interval 1 day)) as date
    )
{%- endmacro %}
