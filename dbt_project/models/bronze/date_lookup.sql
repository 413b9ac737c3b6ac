{{ config(materialized='table') }}

with

days as (

    select cast(generate_series as date) as date
    from generate_series(
        date '{{ var("date_lookup_start") }}',
        date '{{ var("date_lookup_end") }}',
        interval 1 day
    )

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
