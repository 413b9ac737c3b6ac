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
-- a device is the message key, so all its readings share one partition)
readings as (

    select
        device_id,
        "time",
        arg_max_null(heartrate, {'p': kafka_partition, 'o': kafka_offset}) as heartrate,
        max({'p': kafka_partition, 'o': kafka_offset}) as delivery,
        arg_max(load_time, {'p': kafka_partition, 'o': kafka_offset}) as load_time
    from new_readings
    group by device_id, "time"

),

final as (

    select
        device_id,
        "time",
        heartrate,
        coalesce(heartrate > 0, false) as valid,
        delivery.p as kafka_partition,
        delivery.o as kafka_offset,
        load_time
    from readings

)

select * from final
