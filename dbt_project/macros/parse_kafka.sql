{#-
    Parsing and validation of the Kafka payloads (CONTRACT 1.2), shared by the silver models
    and by `quarantine`, so that a record is either parsed into silver or quarantined with a
    reason, never both and never neither.

    Each macro takes a relation (or a parenthesised select) with the columns of
    kafka_multiplex_bz and returns a parenthesised select with the typed payload fields, the
    lineage (kafka_partition, kafka_offset, load_time, source_file, raw_key,
    raw_value) and `reject_reason`: null when the record is valid, else the first rule it breaks.
    The JSON text is parsed once per message (json_document); each field is read from it as text,
    in a column `f_<path>` (f_user_id, f_address_city); numbers are cast from that text (epochs
    through DECIMAL, see epoch_seconds). Only portable SQL and cross_db macros: the same macros
    run on DuckDB and on Spark, where a failed cast is null too (ANSI mode off).
-#}

{#- an integer written as one: digits with an optional minus, else null. A cast alone is not
    enough: DuckDB rounds '1.5' to 2 and Spark (ANSI off) truncates it to 1, where the contract's
    int field was not an integer at all -#}
{% macro _integer(text_expression, type='bigint') -%}
    case when {{ regex_full_match(text_expression, '-?[0-9]+') }} then try_cast({{ text_expression }} as {{ type }}) end
{%- endmacro %}

{% macro _field_column(path) -%}
    f_{{ path | replace('.', '_') }}
{%- endmacro %}

{#- the lineage columns and one text column per JSON field of the messages of `topic` -#}
{% macro _kafka_json_fields(relation, topic, fields) -%}
    {%- set paths = [] -%}
    {%- for f in fields %}{% do paths.append('$.' ~ f) %}{% endfor -%}
        select
            kafka_partition,
            kafka_offset,
            load_time,
            source_file,
            raw_key,
            raw_value,
            document is null as is_malformed,
            {%- for f in fields %}
            {{ json_document_field('document', paths, '$.' ~ f) }} as {{ _field_column(f) }}{{ ',' if not loop.last }}
            {%- endfor %}
        from (
            select
                {{ adapter.quote('partition') }} as kafka_partition,
                {{ adapter.quote('offset') }} as kafka_offset,
                load_time,
                source_file,
                key as raw_key,
                value as raw_value,
                -- one JSON parse per message; null when the value is not valid JSON
                {{ json_document('value', paths) }} as document
            from {{ relation }}
            where topic = '{{ topic }}'
        ) as messages
{%- endmacro %}

{#- the first rule a message breaks (null when valid): a null value, invalid JSON, not an object,
    a missing first key field, then `fields_checks` in order -#}
{% macro _json_reject(first_field, missing_first_reason, fields_checks) -%}
            case
                when raw_value is null then 'null value'
                when is_malformed then 'malformed json'
                -- evaluated only for the few rows without a first key field
                when {{ _field_column(first_field) }} is null and not {{ json_is_object('raw_value') }}
                    then 'payload is not a json object'
                when {{ _field_column(first_field) }} is null then '{{ missing_first_reason }}'
                {%- for condition, reason in fields_checks %}
                when {{ condition }} then '{{ reason }}'
                {%- endfor %}
            end
{%- endmacro %}

{#- the lineage columns every parse macro returns -#}
{% macro _lineage_columns() -%}
        kafka_partition,
        kafka_offset,
        load_time,
        source_file,
        raw_key,
        raw_value
{%- endmacro %}


{% macro parse_user_info(relation) -%}
(
    with

    extracted as (
        {{ _kafka_json_fields(relation, 'user_info', [
            'user_id', 'update_type', 'timestamp', 'dob', 'sex', 'gender', 'first_name',
            'last_name', 'address.street_address', 'address.city', 'address.state', 'address.zip'
        ]) }}
    ),

    typed as (

        select
            *,
            {{ _integer('f_user_id') }} as user_id,
            f_update_type as update_type,
            {{ seconds_to_timestamp(epoch_seconds('f_timestamp')) }} as event_at,
            -- the contract's MM/dd/yyyy exactly: a date parser alone reads 01/05/90 as the year 90
            case
                when {{ regex_full_match('f_dob', '[0-9]{2}/[0-9]{2}/[0-9]{4}') }}
                    then {{ date_from_mm_dd_yyyy('f_dob') }}
            end as dob,
            {{ _integer('f_address_zip', 'integer') }} as zip
        from extracted

    )

    select
        user_id,
        update_type,
        event_at,
        dob,
        f_sex as sex,
        f_gender as gender,
        f_first_name as first_name,
        f_last_name as last_name,
        f_address_street_address as street_address,
        f_address_city as city,
        f_address_state as state,
        zip,
        {{ _lineage_columns() }},
        {{ _json_reject('user_id', 'missing user_id', [
            ('user_id is null', 'invalid user_id'),
            ('update_type is null', 'missing update_type'),
            ("update_type not in ('new', 'update', 'delete')", 'unknown update_type'),
            ('f_timestamp is null', 'missing timestamp'),
            ('event_at is null', 'invalid timestamp'),
            ("f_dob is not null and dob is null", 'bad dob'),
            ("dob is not null and dob > cast(event_at as date)", 'bad dob'),
            ('f_address_zip is not null and zip is null', 'invalid zip'),
        ]) }} as reject_reason
    from typed
)
{%- endmacro %}


{% macro parse_workout(relation) -%}
(
    with

    extracted as (
        {{ _kafka_json_fields(relation, 'workout', ['user_id', 'workout_id', 'timestamp', 'action', 'session_id']) }}
    ),

    typed as (

        select
            *,
            {{ _integer('f_user_id') }} as user_id,
            {{ _integer('f_workout_id') }} as workout_id,
            {{ seconds_to_timestamp(epoch_seconds('f_timestamp')) }} as event_time,
            {{ _integer('f_session_id') }} as session_id
        from extracted

    )

    select
        user_id,
        workout_id,
        event_time as {{ adapter.quote('time') }},
        f_action as action,
        session_id,
        {{ _lineage_columns() }},
        {{ _json_reject('user_id', 'missing user_id', [
            ('user_id is null', 'invalid user_id'),
            ('f_workout_id is null', 'missing workout_id'),
            ('workout_id is null', 'invalid workout_id'),
            ('f_session_id is null', 'missing session_id'),
            ('session_id is null', 'invalid session_id'),
            ('f_timestamp is null', 'missing timestamp'),
            ('event_time is null', 'invalid timestamp'),
            ('f_action is null', 'missing action'),
            ("f_action not in ('start', 'stop')", 'unknown action'),
        ]) }} as reject_reason
    from typed
)
{%- endmacro %}


{% macro parse_bpm(relation) -%}
(
    with

    extracted as (
        {{ _kafka_json_fields(relation, 'bpm', ['device_id', 'time', 'heartrate']) }}
    ),

    typed as (

        select
            *,
            {{ _integer('f_device_id') }} as device_id,
            {{ seconds_to_timestamp(epoch_seconds('f_time')) }} as reading_time,
            try_cast(f_heartrate as double) as heartrate
        from extracted

    )

    select
        device_id,
        reading_time as {{ adapter.quote('time') }},
        heartrate,
        {{ _lineage_columns() }},
        {{ _json_reject('device_id', 'missing device_id', [
            ('device_id is null', 'invalid device_id'),
            ('f_time is null', 'missing time'),
            ('reading_time is null', 'invalid time'),
            ('f_heartrate is not null and (heartrate is null or isnan(heartrate))', 'invalid heartrate'),
            ('heartrate > ' ~ var('max_possible_heartrate'), 'impossible heartrate'),
        ]) }} as reject_reason
    from typed
)
{%- endmacro %}
