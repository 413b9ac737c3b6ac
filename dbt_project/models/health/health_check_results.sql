{{ config(materialized='view') }}

{#- One row per (check, entity) in the shape of the health history (the monitor DAG reads it). -#}

with

volume as (

    select
        check_name,
        entity,
        layer,
        cast(value as double) as value,
        cast(threshold as double) as threshold,
        status,
        detail
    from {{ ref('health_volume') }}

),

duplicates as (

    select
        'duplicates' as check_name,
        entity,
        layer,
        cast(duplicate_keys as double) as value,
        cast(max_duplicate_keys as double) as threshold,
        status,
        printf(
            '%d duplicated key(s) (%d extra rows of %d) on (%s)', duplicate_keys, extra_rows, total_rows, key_columns
        )
            as detail
    from {{ ref('health_duplicate_keys') }}

),

quarantine as (

    select
        'quarantine_rate' as check_name,
        entity,
        'silver' as layer,
        quarantine_rate as value,
        max_rate as threshold,
        status,
        printf(
            'run loaded at %s: %d of %d record(s) quarantined (%.2f %%, limit %.2f %% and at least %d)',
            strftime(load_time, '%Y-%m-%d %H:%M:%S'), quarantined, records, 100 * quarantine_rate, 100 * max_rate,
            min_records
        ) as detail
    from {{ ref('health_quarantine_rate') }}
    where is_latest_run

),

final as (

    select * from volume
    union all
    select * from duplicates
    union all
    select * from quarantine

)

select * from final
