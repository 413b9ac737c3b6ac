with

gym_logs as (

    select * from {{ ref('gym_logs') }}
    where logout is not null

),

users as (

    select
        user_id,
        mac_address
    from {{ ref('users') }}

),

completed_workouts as (

    select * from {{ ref('completed_workouts') }}

),

-- a workout belongs to a visit when the member's mac address matches and it started
-- during the visit (both bounds inclusive)
visit_workouts as (

    select
        cast(g.login as date) as date,
        g.gym,
        g.mac_address,
        cw.workout_id,
        cw.session_id,
        {{ minutes_between('g.login', 'g.logout') }} as minutes_in_gym,
        {{ minutes_between('cw.start_time', 'cw.end_time') }} as minutes_exercising,
        u.user_id,
        g.login
    from gym_logs as g
    inner join users as u
        on g.mac_address = u.mac_address
    inner join completed_workouts as cw
        on
            u.user_id = cw.user_id
            and cw.start_time >= g.login
            and cw.start_time <= g.logout

),

final as (

    select * from visit_workouts

)

select * from final
