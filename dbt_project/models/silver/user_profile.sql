{%- set profile_columns = [
    'user_id', 'dob', 'sex', 'gender', 'first_name', 'last_name', 'street_address', 'city',
    'state', 'zip', 'updated', 'kafka_partition', 'kafka_offset', 'load_time'
] -%}
{%- set insert_values = [] -%}
{%- for column in profile_columns %}{% do insert_values.append('DBT_INTERNAL_SOURCE.' ~ column) %}{% endfor -%}
{{
    config(
        incremental_strategy='merge',
        unique_key='user_id',
        on_schema_change='ignore',
        merge_clauses={
            'when_matched': [
                {
                    'condition': "DBT_INTERNAL_SOURCE.update_type = 'delete'",
                    'action': 'delete'
                },
                {
                    'action': 'update',
                    'mode': 'explicit',
                    'update': {'include': profile_columns}
                }
            ],
            'when_not_matched': [
                {
                    'condition': "DBT_INTERNAL_SOURCE.update_type <> 'delete'",
                    'action': 'insert',
                    'mode': 'explicit',
                    'insert': {
                        'columns': profile_columns,
                        'values': insert_values
                    }
                }
            ]
        }
    )
}}

with

events as (

    select *
    from {{ ref('user_info_events') }}
    where reject_reason is null

),

{% if is_incremental() %}
-- users with an event loaded since the last run; their winner is recomputed over all their
-- events, so an older event arriving late cannot overwrite (or resurrect) a newer state
changed_users as (

    select distinct user_id
    from events
    where {{ loaded_since_last_run() }}

),

candidates as (

    select e.*
    from events as e
    semi join changed_users as c
        on e.user_id = c.user_id

),
{% else %}
candidates as (

    select * from events

),
{% endif %}

-- SCD type 1: the greatest event timestamp wins, ties broken by the later (partition, offset)
latest_event as (

    select *
    from candidates
    qualify
        row_number() over (
            partition by user_id
            order by event_at desc, kafka_partition desc, kafka_offset desc
        ) = 1

),

final as (

    select
        user_id,
        dob,
        sex,
        gender,
        first_name,
        last_name,
        street_address,
        city,
        state,
        zip,
        event_at as updated,
        kafka_partition,
        kafka_offset,
        {%- if is_incremental() %}
        -- only on incremental runs, for the merge to delete the user when the winner is a
        -- delete; on_schema_change='ignore' keeps it out of the table
        update_type,
        {%- endif %}
        load_time
    from latest_event
    {%- if not is_incremental() %}
    where update_type <> 'delete'
    {%- endif %}

)

select * from final
