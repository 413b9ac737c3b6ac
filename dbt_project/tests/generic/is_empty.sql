{#- The model holds no row. Used at warn severity on `quarantine`, so that every run reports
    how many records are quarantined ("Got N results") without stopping the pipeline. -#}
{% test is_empty(model) %}

with

final as (

    select * from {{ model }}

)

select * from final

{% endtest %}
