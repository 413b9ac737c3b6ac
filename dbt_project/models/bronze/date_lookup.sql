{#- Incremental so that a run does not rebuild 36,500 rows it already has: it adds only dates
    of the configured range that are missing (a wider range in the vars extends it). -#}
{{ config(materialized='incremental') }}

with

days as (

    select s.date
    from {{ date_series(var("date_lookup_start"), var("date_lookup_end")) }} as s
    {%- if is_incremental() %}
    where s.date not in (select d.date from {{ this }} as d)
    {%- endif %}

),

weekdays as (

    select
        date,
        -- the contract counts 1 = Sunday
        {{ day_of_week('date') }} as dayofweek
    from days

),

weeks as (

    select
        date,
        dayofweek,
        -- week of the year as strftime's %U: weeks start on Sunday, days before the first Sunday
        -- are week 0 (the Sunday on or before the date, counted in whole weeks)
        cast(floor((dayofyear(date) + 7 - dayofweek) / 7) as integer) as week
    from weekdays

),

final as (

    select
        date,
        week,
        year(date) as year,
        month(date) as month,
        dayofweek,
        dayofmonth(date) as dayofmonth,
        dayofyear(date) as dayofyear,
        cast(year(date) as string) || '-' || cast(week as string) as week_part
    from weeks

)

select * from final
