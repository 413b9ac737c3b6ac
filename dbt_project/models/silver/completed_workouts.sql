{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'workout_id', 'session_id']
    )
}}

with

workouts as (

    select * from {{ ref('workouts') }}

),

{% if is_incremental() %}
-- sessions with an event loaded since the last run are re-paired from all their events, so a
-- stop arriving in a later run than its start completes the workout then
changed_sessions as (

    select distinct user_id, workout_id, session_id
    from workouts
    where {{ loaded_since_last_run() }}

),

session_events as (

    select w.*
    from workouts as w
    semi join changed_sessions as c
        on
            w.user_id = c.user_id
            and w.workout_id = c.workout_id
            and w.session_id = c.session_id

),
{% else %}
session_events as (

    select * from workouts

),
{% endif %}

starts as (

    select
        user_id,
        workout_id,
        session_id,
        {{ adapter.quote('time') }} as start_time,
        load_time
    from session_events
    where action = 'start'

),

stops as (

    select
        user_id,
        workout_id,
        session_id,
        {{ adapter.quote('time') }} as end_time,
        load_time
    from session_events
    where action = 'stop'

),

-- each start with the first stop after it, if that stop is at most max_workout_hours later
paired as (

    select
        s.user_id,
        s.workout_id,
        s.session_id,
        s.start_time,
        min(e.end_time) as end_time,
        greatest(max(s.load_time), min_by(e.load_time, e.end_time)) as load_time
    from starts as s
    inner join stops as e
        on
            s.user_id = e.user_id
            and s.workout_id = e.workout_id
            and s.session_id = e.session_id
            and e.end_time > s.start_time
    group by s.user_id, s.workout_id, s.session_id, s.start_time
    having min(e.end_time) <= s.start_time + interval {{ var('max_workout_hours') }} hour

),

-- one completed workout per session: the earliest start that has a stop
first_pair as (

    select *
    from paired
    qualify
        row_number() over (
            partition by user_id, workout_id, session_id
            order by start_time
        ) = 1

),

final as (

    select
        user_id,
        workout_id,
        session_id,
        start_time,
        end_time,
        load_time
    from first_pair

)

select * from final
