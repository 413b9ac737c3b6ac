{%- set max_rate = var('health_quarantine_max_rate') | float -%}
{%- set min_records = var('health_quarantine_min_records') | int -%}

with

-- a transform run stamps every bronze row it loads with one load_time: one batch per run and entity
bronze_batches as (

    select
        topic as entity,
        load_time,
        count(*) as records
    from {{ ref('kafka_multiplex_bz') }}
    where topic in ('user_info', 'workout', 'bpm')
    group by all

    union all

    select
        'registered_users' as entity,
        load_time,
        count(*) as records
    from {{ ref('registered_users_bz') }}
    group by all

    union all

    select
        'gym_logins' as entity,
        load_time,
        count(*) as records
    from {{ ref('gym_logins_bz') }}
    group by all

),

-- quarantine keeps the bronze load_time of the record it rejected
quarantined as (

    select
        case when source_table = 'kafka_multiplex_bz' then topic else replace(source_table, '_bz', '') end as entity,
        load_time,
        count(*) as quarantined
    from {{ ref('quarantine') }}
    group by all

),

batches as (

    select
        b.entity,
        b.load_time,
        b.records,
        coalesce(q.quarantined, 0) as quarantined,
        coalesce(q.quarantined, 0) / b.records as quarantine_rate,
        row_number() over (partition by b.entity order by b.load_time desc) = 1 as is_latest_run
    from bronze_batches as b
    left join quarantined as q
        on b.entity = q.entity and b.load_time = q.load_time

),

final as (

    select
        *,
        {{ max_rate }} as max_rate,
        {{ min_records }} as min_records,
        case
            when quarantine_rate > {{ max_rate }} and quarantined >= {{ min_records }} then 'warn'
            else 'pass'
        end as status
    from batches

)

select * from final
