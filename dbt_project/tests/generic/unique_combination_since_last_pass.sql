{#-
    unique_combination_since_last_pass(model, combination_of_columns, watermark_column='load_time')

    The same gate as unique_combination_of_columns (a composite key unique and not null), for
    append/merge tables of tens of millions of rows: it checks the keys of the rows written since
    this test last passed (watermark_column > the test's watermark, see macros/test_watermarks.sql
    for why that is complete) against the whole table, instead of grouping the whole table on
    every run. The first run, a full refresh or a rebuilt table check everything.
-#}
{% test unique_combination_since_last_pass(model, combination_of_columns, watermark_column='load_time') %}

{%- set columns = [] -%}
{%- for column in combination_of_columns %}{% do columns.append(quote_column(column)) %}{% endfor -%}
{%- set keys = columns | join(', ') -%}
{%- set watermark_column = quote_column(watermark_column) -%}
{%- set watermark = test_watermark(model, watermarked_test_key('unique_combination_since_last_pass', combination_of_columns)) -%}

{%- if watermark is none %}

with

final as (

    select {{ keys }}, count(*) as occurrences
    from {{ model }}
    group by {{ keys }}
    having
        count(*) > 1
        {%- for column in columns %}
        or {{ column }} is null
        {%- endfor %}

)

select * from final

{%- else %}

with

-- rows written since the test last passed (a null watermark column counts as new)
recent as (

    select {{ keys }}
    from {{ model }}
    where {{ watermark_column }} > cast('{{ watermark }}' as timestamp) or {{ watermark_column }} is null

),

touched_keys as (

    select distinct {{ keys }}
    from recent

),

-- each touched key counted over the whole table
duplicates as (

    select {% for column in columns %}m.{{ column }}{{ ', ' if not loop.last }}{% endfor %}, count(*) as occurrences
    from {{ model }} as m
    semi join touched_keys as t
        on
            {%- for column in columns %}
            m.{{ column }} = t.{{ column }}{{ ' and' if not loop.last }}
            {%- endfor %}
    group by all
    having count(*) > 1

),

null_keys as (

    select {{ keys }}, 1 as occurrences
    from recent
    where
        {%- for column in columns %}
        {{ column }} is null{{ ' or' if not loop.last }}
        {%- endfor %}

),

final as (

    select * from duplicates
    union all
    select * from null_keys

)

select * from final

{%- endif %}

{% endtest %}
