{#- The combination of `combination_of_columns` is unique (a composite key); rows where any key
    column is null are reported too, so a composite key is also tested for not null. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns = [] -%}
{%- for column in combination_of_columns %}{% do columns.append(quote_column(column)) %}{% endfor -%}

with

keys as (

    select {{ columns | join(', ') }}
    from {{ model }}

),

final as (

    select {{ columns | join(', ') }}, count(*) as occurrences
    from keys
    group by {{ columns | join(', ') }}
    having
        count(*) > 1
        {%- for column in columns %}
        or {{ column }} is null
        {%- endfor %}

)

select * from final

{% endtest %}
