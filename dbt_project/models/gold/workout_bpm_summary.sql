with

workout_bpm as (

    select * from {{ ref('workout_bpm') }}

),

user_bins as (

    select * from {{ ref('user_bins') }}

),

per_workout as (

    select
        user_id,
        workout_id,
        session_id,
        min(heartrate) as min_bpm,
        -- the unrounded mean, as the reference publishes it; the order of the terms moves it by
        -- ~1e-13, so compare it with a tolerance. Rounding for display is the dashboard's job.
        avg(heartrate) as avg_bpm,
        max(heartrate) as max_bpm,
        count(*) as num_recordings
    from workout_bpm
    group by user_id, workout_id, session_id

),

final as (

    select
        w.workout_id,
        w.session_id,
        w.user_id,
        b.age,
        b.gender,
        b.city,
        b.state,
        w.min_bpm,
        w.avg_bpm,
        w.max_bpm,
        w.num_recordings
    from per_workout as w
    left join user_bins as b
        on w.user_id = b.user_id

)

select * from final
