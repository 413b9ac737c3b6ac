{#- every entity whose daily volume is watched, with the day it counts by -#}
{%- set trailing_days = var('health_volume_trailing_days') | int -%}

with

registered_users as (

    select
        'registered_users' as entity,
        'bronze' as layer,
        cast(registration_timestamp as date) as day,
        count(distinct user_id) as row_count
    from {{ ref('registered_users_bz') }}
    where registration_timestamp is not null
    group by all

),

gym_logins as (

    select
        'gym_logins' as entity,
        'bronze' as layer,
        cast(login as date) as day,
        count(distinct row(mac_address, gym, login)) as row_count
    from {{ ref('gym_logins_bz') }}
    where login is not null
    group by all

),

kafka_topics as (

    select
        topic as entity,
        'bronze' as layer,
        date as day,
        count(*) as row_count
    from {{ ref('kafka_multiplex_bz') }}
    where topic in ('user_info', 'workout', 'bpm') and date is not null
    group by all

),

gym_summary as (

    select
        'gym_summary' as entity,
        'gold' as layer,
        date as day,
        count(*) as row_count
    from {{ ref('gym_summary') }}
    group by all

),

-- gold has no date of its own: a workout counts on the day it started
workout_bpm_summary as (

    select
        'workout_bpm_summary' as entity,
        'gold' as layer,
        cast(cw.start_time as date) as day,
        count(*) as row_count
    from {{ ref('workout_bpm_summary') }} as s
    inner join {{ ref('completed_workouts') }} as cw
        on
            s.user_id = cw.user_id
            and s.workout_id = cw.workout_id
            and s.session_id = cw.session_id
    group by all

),

counted as (

    select * from registered_users
    union all
    select * from gym_logins
    union all
    select * from kafka_topics
    union all
    select * from gym_summary
    union all
    select * from workout_bpm_summary

),

bounds as (

    select
        entity,
        layer,
        min(day) as first_day,
        max(day) as last_day
    from counted
    group by all

),

-- every calendar day between an entity's first and last day: a silent day counts as 0 rows
spine as (

    select
        entity,
        layer,
        last_day,
        cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as day
    from bounds

),

daily as (

    select
        s.entity,
        s.layer,
        s.day,
        s.last_day,
        coalesce(c.row_count, 0) as row_count
    from spine as s
    left join counted as c
        on s.entity = c.entity and s.day = c.day

),

windowed as (

    select
        *,
        avg(row_count) over previous_days as trailing_mean,
        count(*) over previous_days as trailing_days
    from daily
    window previous_days as (
        partition by entity
        order by day
        rows between {{ trailing_days }} preceding and 1 preceding
    )

),

thresholds as (
    {%- for entity in health_volume_entities() %}
    select
        '{{ entity }}' as entity,
        {{ health_volume_threshold(entity, 'max_change') }} as max_change,
        {{ health_volume_threshold(entity, 'min_rows') }} as min_rows  -- noqa: RF04
    {{- "\n    union all" if not loop.last }}
    {%- endfor %}

),

final as (

    select
        t.entity,
        t.layer,
        t.day,
        t.row_count,
        t.trailing_mean,
        t.trailing_days,
        case when t.trailing_mean > 0 then (t.row_count - t.trailing_mean) / t.trailing_mean end as change_ratio,
        th.max_change,
        th.min_rows,
        -- the newest day may still be filling up (late data): the day before it is the one judged
        t.day = t.last_day - 1 as is_evaluated_day,
        case
            when t.trailing_days < {{ trailing_days }} then 'skipped'
            when t.trailing_mean < th.min_rows then 'skipped'
            when abs(t.row_count - t.trailing_mean) > th.max_change * t.trailing_mean then 'warn'
            else 'pass'
        end as status
    from windowed as t
    inner join thresholds as th
        on t.entity = th.entity

)

select * from final
