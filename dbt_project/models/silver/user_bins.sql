{#-
    A table, not incremental: ages move with the as-of date, so every run recomputes all users
    (one row per profile, cheap) and a run gives the same rows as a full refresh by construction.
-#}
{{ config(materialized='table') }}

{%- set as_of_date = var('as_of_date') -%}

with

user_profile as (

    select * from {{ ref('user_profile') }}

),

as_of as (

    select
        {% if as_of_date -%}
        date '{{ as_of_date }}'
        {%- else -%}
        current_date
        {%- endif %} as as_of_date

),

ages as (

    select
        p.user_id,
        p.gender,
        p.city,
        p.state,
        -- whole years: subtract one when the birthday has not come yet in the as-of year
        -- (someone born on 29 February has their birthday on 1 March in other years)
        year(a.as_of_date) - year(p.dob)
        - case
            when month(a.as_of_date) * 100 + dayofmonth(a.as_of_date) < month(p.dob) * 100 + dayofmonth(p.dob) then 1
            else 0
        end as age_years
    from user_profile as p
    cross join as_of as a

),

final as (

    select
        user_id,
        case
            when age_years is null or age_years < 0 then 'invalid age'
            when age_years < 18 then 'under 18'
            when age_years < 25 then '18-25'
            when age_years < 35 then '25-35'
            when age_years < 45 then '35-45'
            when age_years < 55 then '45-55'
            when age_years < 65 then '55-65'
            when age_years < 75 then '65-75'
            when age_years < 85 then '75-85'
            when age_years < 95 then '85-95'
            else '95+'
        end as age,
        gender,
        city,
        state
    from ages

)

select * from final
