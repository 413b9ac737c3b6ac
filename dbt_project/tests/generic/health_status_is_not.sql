{#- No row of a health model has one of `statuses` (its `status` column). The health models compute
    each check's status against its threshold; this test makes dbt report them (warn or error, per
    the test's severity) in `dbt build --select tag:health`. -#}
{% test health_status_is_not(model, statuses, column_name='status') %}

with

final as (

    select *
    from {{ model }}
    where {{ column_name }} in ({% for s in statuses %}'{{ s }}'{{ ', ' if not loop.last }}{% endfor %})

)

select * from final

{% endtest %}
