{#- Every row satisfies `expression` (rows where it is false or null fail). -#}
{% test expression_is_true(model, expression, column_name=none) %}

with

final as (

    select *
    from {{ model }}
    where not coalesce({{ expression }}, false)

)

select * from final

{% endtest %}
