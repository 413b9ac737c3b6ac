{#- (model, layer, key columns): the grain of every table that must hold each key once. Bronze SQL
    tables hold row versions: one per (key, modified_at) and the rest of the row; bronze Kafka one per
    message coordinate. -#}
{%- set grains = [
    ('registered_users_bz', 'bronze', ['user_id', 'device_id', 'mac_address', 'registration_timestamp', 'modified_at']),
    ('gym_logins_bz', 'bronze', ['mac_address', 'gym', 'login', 'logout', 'modified_at']),
    ('kafka_multiplex_bz', 'bronze', ['topic', '"partition"', '"offset"']),
    ('users', 'silver', ['user_id']),
    ('gym_logs', 'silver', ['mac_address', 'gym', 'login']),
    ('user_profile', 'silver', ['user_id']),
    ('workouts', 'silver', ['user_id', 'workout_id', 'session_id', 'action', '"time"']),
    ('heart_rate', 'silver', ['device_id', '"time"']),
    ('user_bins', 'silver', ['user_id']),
    ('completed_workouts', 'silver', ['user_id', 'workout_id', 'session_id']),
    ('workout_bpm', 'silver', ['user_id', 'workout_id', 'session_id', '"time"']),
    ('workout_bpm_summary', 'gold', ['user_id', 'workout_id', 'session_id']),
    ('gym_summary', 'gold', ['gym', 'mac_address', 'login', 'user_id', 'workout_id', 'session_id']),
] -%}

with

{% for model_name, layer, keys in grains %}
{{ model_name }}_keys as (

    select
        '{{ model_name }}' as entity,
        '{{ layer }}' as layer,
        '{{ keys | join(", ") | replace("\"", "") }}' as key_columns,
        count(*) as duplicate_keys,
        coalesce(sum(occurrences - 1), 0) as extra_rows,
        (select count(*) from {{ ref(model_name) }}) as total_rows
    from (
        select count(*) as occurrences
        from {{ ref(model_name) }}
        group by {{ keys | join(', ') }}
        having count(*) > 1
    )

),

{% endfor %}

final as (
    {%- for model_name, layer, keys in grains %}
    select * from {{ model_name }}_keys
    {{- "\n    union all" if not loop.last }}
    {%- endfor %}

)

select
    *,
    {{ var('health_duplicates_max') | int }} as max_duplicate_keys,
    case when duplicate_keys > {{ var('health_duplicates_max') | int }} then 'error' else 'pass' end as status
from final
