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

new_messages as (

    select *
    from {{ ref('kafka_multiplex_bz') }}
    where
        topic = 'workout'
        {%- if is_incremental() %}
        and load_time > (select coalesce(max(load_time), '-infinity'::timestamp) from {{ this }})
        {%- endif %}

),

parsed as (

    select * from {{ parse_workout('new_messages') }}

),

-- a redelivered event (same user, workout, session, action and time) collapses into one row;
-- the first delivery is kept as lineage
distinct_events as (

    select
        user_id,
        workout_id,
        "time",
        action,
        session_id,
        min(load_time) as load_time
    from parsed
    where reject_reason is null
    group by user_id, workout_id, "time", action, session_id

),

final as (

    select * from distinct_events

)

select * from final
