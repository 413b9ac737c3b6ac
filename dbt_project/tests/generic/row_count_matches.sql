{#- The model has as many rows as `compare_model` (filtered by `compare_where`). Used where a
    model holds exactly one row per upstream row, as a cheap stand-in for a key-uniqueness test
    over tens of millions of rows: the upstream key is unique (tested there), so a lost or a
    doubled row shows up as a count difference. -#}
{% test row_count_matches(model, compare_model, compare_where='true') %}

with

counts as (

    select
        (select count(*) from {{ model }}) as model_rows,
        (select count(*) from {{ compare_model }} where {{ compare_where }}) as compare_rows

),

final as (

    select *
    from counts
    where model_rows <> compare_rows

)

select * from final

{% endtest %}
