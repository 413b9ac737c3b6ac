{{
    config(
        incremental_strategy='append'
    )
}}

{#- one watermark per parent: each *_events model is only ever behind bronze, never ahead, so a
    per-topic mark never passes a rejected record its parent writes later (a shared mark would,
    when the parents ran unevenly) -#}
{%- set topic_watermark = "w.source_table = 'kafka_multiplex_bz' and w.topic = '%s'" %}
{%- set other_topics_watermark = "w.source_table = 'kafka_multiplex_bz'"
    ~ " and w.topic not in ('user_info', 'workout', 'bpm')" %}

with

unknown_topics as (

    select
        topic,
        {{ adapter.quote('partition') }} as kafka_partition,
        {{ adapter.quote('offset') }} as kafka_offset,
        key as raw_key,
        value as raw_value,
        'unknown topic' as reject_reason,
        load_time,
        source_file
    from {{ ref('kafka_multiplex_bz') }}
    where
        topic not in ('user_info', 'workout', 'bpm')
        and {{ loaded_since_last_run(other_topics_watermark) }}

),

new_registered_users as (

    select *
    from {{ ref('registered_users_bz') }}
    where {{ loaded_since_last_run("w.source_table = 'registered_users_bz'") }}

),

new_gym_logins as (

    select *
    from {{ ref('gym_logins_bz') }}
    where {{ loaded_since_last_run("w.source_table = 'gym_logins_bz'") }}

),

rejected_messages as (
    {%- for topic, events in [
        ('user_info', ref('user_info_events')),
        ('workout', ref('workout_events')),
        ('bpm', ref('bpm_events')),
    ] %}

    select
        '{{ topic }}' as topic,
        kafka_partition,
        kafka_offset,
        raw_key,
        raw_value,
        reject_reason,
        load_time,
        source_file
    from {{ events }}
    where
        reject_reason is not null
        and {{ loaded_since_last_run(topic_watermark | format(topic)) }}

    union all
    {%- endfor %}

    select * from unknown_topics

),

-- the same rules as users: a version without its key fields cannot be used
checked_registered_users as (

    select
        r.user_id,
        r.device_id,
        r.mac_address,
        -- timestamps as text, so the raw record reads the same on every engine
        cast(r.registration_timestamp as string) as registration_timestamp,
        cast(r.modified_at as string) as modified_at,
        case
            when r.user_id is null then 'missing user_id'
            when r.device_id is null then 'missing device_id'
            when r.mac_address is null then 'missing mac_address'
            when r.registration_timestamp is null then 'missing registration_timestamp'
        end as reject_reason,
        r.load_time,
        r.source_file
    from new_registered_users as r

),

rejected_registered_users as (

    select
        {{ json_object(['user_id', 'device_id', 'mac_address', 'registration_timestamp', 'modified_at']) }}
            as raw_record,
        reject_reason,
        load_time,
        source_file
    from checked_registered_users
    where reject_reason is not null

),

-- the same rules as gym_logs: key fields present, a logout after the login
checked_gym_logins as (

    select
        g.mac_address,
        g.gym,
        cast(g.login as string) as login,  -- noqa: RF04
        cast(g.logout as string) as logout,
        cast(g.modified_at as string) as modified_at,
        case
            when g.mac_address is null then 'missing mac_address'
            when g.gym is null then 'missing gym'
            when g.login is null then 'missing login'
            when g.logout <= g.login then 'logout not after login'
        end as reject_reason,
        g.load_time,
        g.source_file
    from new_gym_logins as g

),

rejected_gym_logins as (

    select
        {{ json_object(['mac_address', 'gym', 'login', 'logout', 'modified_at']) }} as raw_record,
        reject_reason,
        load_time,
        source_file
    from checked_gym_logins
    where reject_reason is not null

),

final as (

    select
        'kafka_multiplex_bz' as source_table,
        topic,
        kafka_partition,
        kafka_offset,
        raw_key,
        raw_value as raw_record,
        reject_reason as reason,
        load_time,
        source_file
    from rejected_messages

    union all

    select
        'registered_users_bz' as source_table,
        null as topic,
        null as kafka_partition,
        null as kafka_offset,
        null as raw_key,
        raw_record,
        reject_reason as reason,
        load_time,
        source_file
    from rejected_registered_users

    union all

    select
        'gym_logins_bz' as source_table,
        null as topic,
        null as kafka_partition,
        null as kafka_offset,
        null as raw_key,
        raw_record,
        reject_reason as reason,
        load_time,
        source_file
    from rejected_gym_logins

)

select * from final
