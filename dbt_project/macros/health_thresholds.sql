{#-
    health_volume_threshold(entity, name)

    A volume threshold (`max_change`, `min_rows`) for one entity: its entry in the JSON var
    `health_volume_overrides` (FITLAKE_VOLUME_OVERRIDES) when present, else the global var
    `health_volume_<name>`. Returned as a SQL number literal.
-#}
{% macro health_volume_threshold(entity, name) -%}
    {%- set overrides = fromjson(var('health_volume_overrides') | string) or {} -%}
    {%- set value = (overrides.get(entity) or {}).get(name, var('health_volume_' ~ name)) -%}
    {{- value | float if name == 'max_change' else value | int -}}
{%- endmacro %}


{#- the entities whose daily volume is watched: every source entity and every gold table -#}
{% macro health_volume_entities() -%}
    {{ return(['registered_users', 'gym_logins', 'user_info', 'workout', 'bpm', 'gym_summary', 'workout_bpm_summary']) }}
{%- endmacro %}
