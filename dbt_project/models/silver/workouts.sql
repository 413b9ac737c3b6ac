{{
    config(
        incremental_strategy='merge',
        unique_key=['user_id', 'workout_id', 'session_id', 'action', 'time'],
        merge_clauses={
            'when_matched': [{'action': 'do_nothing'}],
            'when_not_matched': [{'action': 'insert', 'mode': 'by_name'}]
        }
    )
}}

with

new_events as (

    select *
    from {{ ref('workout_events') }}
    where
        reject_reason is null
        and {{ loaded_since_last_run() }}

),

-- a redelivered event (same user, workout, session, action and time) collapses into one row;
-- the first delivery is kept as lineage
distinct_events as (

    select
        user_id,
        workout_id,
        {{ adapter.quote('time') }},
        action,
        session_id,
        min(load_time) as load_time
    from new_events
    group by user_id, workout_id, {{ adapter.quote('time') }}, action, session_id

),

final as (

    select * from distinct_events

)

select * from final
