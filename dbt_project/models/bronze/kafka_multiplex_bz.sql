{%- set loaded = this if is_incremental() else none -%}
{%- set new_files = landing_files('landing', 'kafka', loaded) -%}
{%- set dedup_files = kafka_files_needing_dedup(new_files, loaded) -%}
{%- set clean_files = new_files | reject('in', dedup_files) | list -%}

with

-- new files whose offset ranges overlap nothing: appended as they are
clean_messages as (

    select *
    from {{ read_landing_files('landing', 'kafka', clean_files) }}

),

-- new files that may repeat a message: a message (topic, partition, offset) is kept once,
-- and never when it is already in bronze
redelivered_files as (

    select *
    from {{ read_landing_files('landing', 'kafka', dedup_files) }}

),

deduplicated_messages as (

    select r.*
    from redelivered_files as r
    {%- if is_incremental() %}
    where not exists (
        select 1
        from {{ this }} as t
        where
            t.topic = r.topic
            and t.{{ adapter.quote('partition') }} = r.{{ adapter.quote('partition') }}
            and t.{{ adapter.quote('offset') }} = r.{{ adapter.quote('offset') }}
    )
    {%- endif %}
    qualify
        row_number() over (
            partition by r.topic, r.{{ adapter.quote('partition') }}, r.{{ adapter.quote('offset') }}
            order by r.source_file
        ) = 1

),

new_messages as (

    select * from clean_messages
    union all
    select * from deduplicated_messages

),

date_lookup as (

    select * from {{ ref('date_lookup') }}

),

final as (

    select
        m.key,
        m.value,
        m.topic,
        m.{{ adapter.quote('partition') }},
        m.{{ adapter.quote('offset') }},
        m.{{ adapter.quote('timestamp') }},
        cast(m.{{ adapter.quote('timestamp') }} as date) as date,
        dl.week_part,
        {{ load_time() }} as load_time,
        m.source_file
    from new_messages as m
    left join date_lookup as dl
        on cast(m.{{ adapter.quote('timestamp') }} as date) = dl.date

)

select * from final
