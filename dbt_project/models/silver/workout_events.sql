{{ config(incremental_strategy='append') }}

with

-- every bronze message of the topic loaded since the last run; each one yields a row here,
-- so the watermark never lags
new_messages as (

    select *
    from {{ ref('kafka_multiplex_bz') }}
    where
        topic = 'workout'
        and {{ loaded_since_last_run() }}

),

parsed as (

    select * from {{ parse_workout('new_messages') }}

),

final as (

    select
        user_id,
        workout_id,
        {{ adapter.quote('time') }},
        action,
        session_id,
        reject_reason,
        kafka_partition,
        kafka_offset,
        -- the raw record and its file are kept for rejected messages only (bronze keeps them
        -- all, and (kafka_partition, kafka_offset) leads back to it)
        case when reject_reason is not null then raw_key end as raw_key,
        case when reject_reason is not null then raw_value end as raw_value,
        case when reject_reason is not null then source_file end as source_file,
        load_time
    from parsed

)

select * from final
