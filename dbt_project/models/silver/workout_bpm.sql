{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'workout_id', 'session_id'],
        post_hook="delete from {{ this }} where {{ adapter.quote('time') }} is null"
    )
}}

with

completed_workouts as (

    select * from {{ ref('completed_workouts') }}

),

users as (

    select
        user_id,
        device_id,
        load_time
    from {{ ref('users') }}

),

heart_rate as (

    select
        device_id,
        {{ adapter.quote('time') }},
        heartrate,
        load_time
    from {{ ref('heart_rate') }}
    where valid

),

workout_devices as (

    select
        cw.user_id,
        cw.workout_id,
        cw.session_id,
        cw.start_time,
        cw.end_time,
        u.device_id,
        greatest(cw.load_time, u.load_time) as load_time
    from completed_workouts as cw
    inner join users as u
        on cw.user_id = u.user_id

),

{% if is_incremental() %}
{%- set since_last_run = loaded_since_last_run() %}
-- (valid or not: a reading redelivered as invalid must leave the workouts it was in); read
-- straight from heart_rate with the watermark inlined, so only the new rows are scanned
new_readings as (

    select
        device_id,
        {{ adapter.quote('time') }},
        load_time
    from {{ ref('heart_rate') }}
    where {{ since_last_run }}

),

-- a workout is recomputed when it (or its user's device) changed, or when a reading that
-- changed falls inside its window: late readings join workouts completed in earlier runs.
-- trigger_load_time: the latest load_time among the changes that force the rebuild
affected_workouts as (

    select
        user_id,
        workout_id,
        session_id,
        max(trigger_load_time) as trigger_load_time
    from (
        select user_id, workout_id, session_id, load_time as trigger_load_time
        from workout_devices
        where {{ since_last_run }}

        union all

        select wd.user_id, wd.workout_id, wd.session_id, r.load_time as trigger_load_time
        from workout_devices as wd
        inner join new_readings as r
            on
                wd.device_id = r.device_id
                and r.{{ adapter.quote('time') }} > wd.start_time
                and r.{{ adapter.quote('time') }} <= wd.end_time
    ) as triggers
    group by user_id, workout_id, session_id

),

-- every row of a rebuilt workout is stamped with at least its trigger's load_time, so all
-- rows written by this run have a load_time after the previous run's (the incremental key
-- test of this model relies on it, see workout_bpm.yml)
workouts_to_build as (

    select
        wd.user_id,
        wd.workout_id,
        wd.session_id,
        wd.start_time,
        wd.end_time,
        wd.device_id,
        greatest(wd.load_time, a.trigger_load_time) as load_time
    from workout_devices as wd
    inner join affected_workouts as a
        on
            wd.user_id = a.user_id
            and wd.workout_id = a.workout_id
            and wd.session_id = a.session_id

),

-- restrict the readings scanned to the devices and time span of the workouts being rebuilt
candidate_readings as (

    select *
    from heart_rate
    where
        {{ adapter.quote('time') }} > (select min(start_time) from workouts_to_build)
        and {{ adapter.quote('time') }} <= (select max(end_time) from workouts_to_build)
        and device_id in (select device_id from workouts_to_build)

),
{% else %}
workouts_to_build as (

    select * from workout_devices

),

candidate_readings as (

    select * from heart_rate

),
{% endif %}

-- readings strictly after the start and up to and including the end
readings_in_window as (

    select
        w.user_id,
        w.workout_id,
        w.session_id,
        w.start_time,
        w.end_time,
        r.{{ adapter.quote('time') }},
        r.heartrate,
        greatest(w.load_time, r.load_time) as load_time
    from workouts_to_build as w
    inner join candidate_readings as r
        on
            w.device_id = r.device_id
            and r.{{ adapter.quote('time') }} > w.start_time
            and r.{{ adapter.quote('time') }} <= w.end_time

),

final as (

    select * from readings_in_window
    {%- if is_incremental() %}

    -- one marker row per rebuilt workout, so that delete+insert also clears a workout left
    -- without readings; the post-hook removes the markers
    union all

    select
        user_id,
        workout_id,
        session_id,
        start_time,
        end_time,
        null as {{ adapter.quote('time') }},
        null as heartrate,
        load_time
    from workouts_to_build
    {%- endif %}

)

select * from final
