{{
    config(
        incremental_strategy='merge',
        unique_key=['device_id', 'time'],
        merge_clauses={
            'when_matched': [
                {
                    'condition': '(DBT_INTERNAL_SOURCE.kafka_partition, DBT_INTERNAL_SOURCE.kafka_offset) > (DBT_INTERNAL_DEST.kafka_partition, DBT_INTERNAL_DEST.kafka_offset)',
                    'action': 'update',
                    'mode': 'by_name'
                }
            ],
            'when_not_matched': [{'action': 'insert', 'mode': 'by_name'}]
        }
    )
}}

with

-- only readings loaded since the last run: the merge then compares just these keys
new_readings as (

    select *
    from {{ ref('bpm_events') }}
    where
        reject_reason is null
        and {{ loaded_since_last_run() }}

),

-- one reading per (device_id, time): the last delivered one wins (greatest partition, offset;
-- a device is the message key, so all its readings share one partition). Duplicates are rare,
-- so only keys that occur more than once go through the window; the rest pass straight on.
duplicate_keys as (

    select
        device_id,
        {{ adapter.quote('time') }}
    from new_readings
    group by device_id, {{ adapter.quote('time') }}
    having count(*) > 1

),

single_readings as (

    select r.*
    from new_readings as r
    anti join duplicate_keys as d
        on r.device_id = d.device_id and r.{{ adapter.quote('time') }} = d.{{ adapter.quote('time') }}

),

last_delivered_duplicates as (

    select r.*
    from new_readings as r
    semi join duplicate_keys as d
        on r.device_id = d.device_id and r.{{ adapter.quote('time') }} = d.{{ adapter.quote('time') }}
    qualify
        row_number() over (
            partition by r.device_id, r.{{ adapter.quote('time') }}
            order by r.kafka_partition desc, r.kafka_offset desc
        ) = 1

),

readings as (

    select * from single_readings
    union all
    select * from last_delivered_duplicates

),

final as (

    select
        device_id,
        {{ adapter.quote('time') }},
        heartrate,
        coalesce(heartrate > 0, false) as valid,
        kafka_partition,
        kafka_offset,
        load_time
    from readings

)

select * from final
