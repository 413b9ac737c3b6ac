with

daily as (

    select * from {{ ref('health_daily_volume') }}

),

entities as (
    {%- for entity in health_volume_entities() %}
    select
        '{{ entity }}' as entity,
        {{ health_volume_threshold(entity, 'max_change') }} as max_change
    {{- "\n    union all" if not loop.last }}
    {%- endfor %}

),

evaluated as (

    select * from daily
    where is_evaluated_day

),

final as (

    select
        'volume' as check_name,
        e.entity,
        coalesce(v.layer, case when e.entity in ('gym_summary', 'workout_bpm_summary') then 'gold' else 'bronze' end)
            as layer,
        v.change_ratio as value,
        e.max_change as threshold,
        coalesce(v.status, 'skipped') as status,
        case
            when v.entity is null then 'fewer than 2 days of data: nothing to compare yet'
            when v.status = 'skipped' and v.trailing_days < {{ var('health_volume_trailing_days') | int }}
                then printf(
                        '%s: %d rows; only %d earlier day(s) of data, the check needs %d',
                        v.day, v.row_count, v.trailing_days, {{ var('health_volume_trailing_days') | int }}
                    )
            when v.status = 'skipped'
                then printf(
                        '%s: %d rows; trailing mean %.1f is below the minimum volume %d',
                        v.day, v.row_count, v.trailing_mean, v.min_rows
                    )
            else printf(
                    '%s: %d rows against a trailing %d-day mean of %.1f (%+.1f %%, limit ±%.1f %%)',
                    v.day, v.row_count, v.trailing_days, v.trailing_mean, 100 * v.change_ratio, 100 * v.max_change
                )
        end as detail,
        v.day as observed_day
    from entities as e
    left join evaluated as v
        on e.entity = v.entity

)

select * from final
