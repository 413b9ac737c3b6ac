{{ config(incremental_strategy='append') }}

with

landed as (

    select *
    from {{ read_landing('landing', 'kafka', this if is_incremental() else none) }}

),

date_lookup as (

    select * from {{ ref('date_lookup') }}

),

-- a message is identified by (topic, partition, offset): keep one copy of it
deduplicated as (

    select *
    from landed
    qualify row_number() over (
        partition by topic, "partition", "offset"
        order by source_file
    ) = 1

),

{% if is_incremental() %}
-- and never load a message a second time, even from a new file (exactly-once landing makes
-- this a safety net; it compares only against offsets at or above the new files' lowest one)
new_messages as (

    select d.*
    from deduplicated as d
    where not exists (
        select 1
        from {{ this }} as t
        where
            t.topic = d.topic
            and t."partition" = d."partition"
            and t."offset" = d."offset"
            and t."offset" >= (select min(m."offset") from deduplicated as m)
    )

),
{% else %}
new_messages as (

    select * from deduplicated

),
{% endif %}

final as (

    select
        m.key,
        m.value,
        m.topic,
        m."partition",
        m."offset",
        m."timestamp",
        cast(m."timestamp" as date) as date,
        dl.week_part,
        {{ load_time() }} as load_time,
        m.source_file
    from new_messages as m
    left join date_lookup as dl
        on cast(m."timestamp" as date) = dl.date

)

select * from final
