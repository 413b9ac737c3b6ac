{#- Incremental so that a run does not rebuild 36,500 rows it already has: it adds only dates
    of the configured range that are missing (a wider range in the vars extends it). -#}
{{ config(materialized='incremental') }}

with

days as (

    select cast(generate_series as date) as date
    from
        generate_series(
            date '{{ var("date_lookup_start") }}',
            date '{{ var("date_lookup_end") }}',
            interval 1 day
        )
    {%- if is_incremental() %}
    where cast(generate_series as date) not in (select d.date from {{ this }} as d)
    {%- endif %}

),

final as (

    select
        date,
        -- %U: week of the year, weeks start on Sunday, days before the first Sunday are week 0
        cast(strftime(date, '%U') as integer) as week,
        year(date) as year,
        month(date) as month,
        -- DuckDB counts 0 = Sunday; the contract counts 1 = Sunday
        dayofweek(date) + 1 as dayofweek,
        dayofmonth(date) as dayofmonth,
        dayofyear(date) as dayofyear,
        cast(year(date) as varchar) || '-' || cast(cast(strftime(date, '%U') as integer) as varchar) as week_part
    from days

)

select * from final
