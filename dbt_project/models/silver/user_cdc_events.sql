{{
    config(
        incremental_strategy='append'
    )
}}

with

new_messages as (

    select *
    from {{ ref('kafka_multiplex_bz') }}
    where
        topic = 'user_info'
        {%- if is_incremental() %}
        and load_time > (select coalesce(max(load_time), '-infinity'::timestamp) from {{ this }})
        {%- endif %}

),

parsed as (

    select * from {{ parse_user_info('new_messages') }}

),

final as (

    select
        user_id,
        update_type,
        event_at,
        dob,
        sex,
        gender,
        first_name,
        last_name,
        street_address,
        city,
        state,
        zip,
        kafka_partition,
        kafka_offset,
        broker_timestamp,
        load_time,
        source_file
    from parsed
    where reject_reason is null

)

select * from final
