{#- The combination of `combination_of_columns` is unique (a composite key); rows where any key
    column is null are reported too, so a composite key is also tested for not null. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

keys as (

    select {{ combination_of_columns | join(', ') }}
    from {{ model }}

),

final as (

    select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
    from keys
    group by {{ combination_of_columns | join(', ') }}
    having
        count(*) > 1
        {%- for column in combination_of_columns %}
        or {{ column }} is null
        {%- endfor %}

)

select * from final

{% endtest %}
