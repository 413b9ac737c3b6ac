{#-
    Parsing and validation of the Kafka payloads (CONTRACT 1.2), shared by the silver models
    and by `quarantine`, so that a record is either parsed into silver or quarantined with a
    reason, never both and never neither.

    Each macro takes a relation (or a parenthesised select) with the columns of
    kafka_multiplex_bz and returns a parenthesised select with the typed payload fields, the
    lineage (kafka_partition, kafka_offset, load_time, source_file, raw_key,
    raw_value) and `reject_reason`: null when the record is valid, else the first rule it breaks.
    The JSON text is parsed once into a list of strings; numbers are cast from that text
    (epochs through DECIMAL, see epoch_seconds).
-#}

{% macro _kafka_json_fields(relation, topic, fields) -%}
        select
            "partition" as kafka_partition,
            "offset" as kafka_offset,
            load_time,
            source_file,
            key as raw_key,
            value as raw_value,
            -- one JSON parse per message; try(): a malformed value yields null instead of
            -- failing the statement
            try(json_extract_string(value, [{% for f in fields %}'$.{{ f }}'{{ ', ' if not loop.last }}{% endfor %}])) as fields
        from {{ relation }}
        where topic = '{{ topic }}'
{%- endmacro %}

{% macro _json_reject(fields_checks) -%}
            case
                when raw_value is null then 'null value'
                when fields is null then 'malformed json'
                -- evaluated only for the few rows without a first key field
                when fields[1] is null and coalesce(try(json_type(raw_value)), '') <> 'OBJECT'
                    then 'payload is not a json object'
                {%- for condition, reason in fields_checks %}
                when {{ condition }} then '{{ reason }}'
                {%- endfor %}
            end
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

    seconds as (

        select *, {{ epoch_seconds('fields[3]') }} as event_seconds
        from extracted

    ),

    typed as (

        select
            *,
            try_cast(fields[1] as bigint) as user_id,
            fields[2] as update_type,
            {{ seconds_to_timestamp('event_seconds') }} as event_at,
            fields[4] as dob_text,
            -- the contract's MM/dd/yyyy exactly: strptime alone reads 01/05/90 as the year 90
            case
                when regexp_full_match(fields[4], '[0-9]{2}/[0-9]{2}/[0-9]{4}')
                    then try_strptime(fields[4], '%m/%d/%Y')::date
            end as dob,
            fields[5] as sex,
            fields[6] as gender,
            fields[7] as first_name,
            fields[8] as last_name,
            fields[9] as street_address,
            fields[10] as city,
            fields[11] as state,
            try_cast(fields[12] as integer) as zip
        from seconds

    )

    select
        * exclude (fields, dob_text, event_seconds),
        {{ _json_reject([
            ('fields[1] is null', 'missing user_id'),
            ('user_id is null', 'invalid user_id'),
            ('update_type is null', 'missing update_type'),
            ("update_type not in ('new', 'update', 'delete')", 'unknown update_type'),
            ('fields[3] is null', 'missing timestamp'),
            ('event_at is null', 'invalid timestamp'),
            ("dob_text is not null and dob is null", 'bad dob'),
            ("dob is not null and dob > cast(event_at as date)", 'bad dob'),
            ('fields[12] is not null and zip is null', 'invalid zip'),
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

    seconds as (

        select *, {{ epoch_seconds('fields[3]') }} as event_seconds
        from extracted

    ),

    typed as (

        select
            *,
            try_cast(fields[1] as bigint) as user_id,
            try_cast(fields[2] as bigint) as workout_id,
            {{ seconds_to_timestamp('event_seconds') }} as "time",
            fields[4] as action,
            try_cast(fields[5] as bigint) as session_id
        from seconds

    )

    select
        * exclude (fields, event_seconds),
        {{ _json_reject([
            ('fields[1] is null', 'missing user_id'),
            ('user_id is null', 'invalid user_id'),
            ('fields[2] is null', 'missing workout_id'),
            ('workout_id is null', 'invalid workout_id'),
            ('fields[5] is null', 'missing session_id'),
            ('session_id is null', 'invalid session_id'),
            ('fields[3] is null', 'missing timestamp'),
            ('"time" is null', 'invalid timestamp'),
            ('action is null', 'missing action'),
            ("action not in ('start', 'stop')", 'unknown action'),
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

    seconds as (

        select *, {{ epoch_seconds('fields[2]') }} as reading_seconds
        from extracted

    ),

    typed as (

        select
            *,
            try_cast(fields[1] as bigint) as device_id,
            {{ seconds_to_timestamp('reading_seconds') }} as "time",
            try_cast(fields[3] as double) as heartrate
        from seconds

    )

    select
        * exclude (fields, reading_seconds),
        {{ _json_reject([
            ('fields[1] is null', 'missing device_id'),
            ('device_id is null', 'invalid device_id'),
            ('fields[2] is null', 'missing time'),
            ('"time" is null', 'invalid time'),
            ('fields[3] is not null and (heartrate is null or isnan(heartrate))', 'invalid heartrate'),
            ('heartrate > ' ~ var('max_possible_heartrate'), 'impossible heartrate'),
        ]) }} as reject_reason
    from typed
)
{%- endmacro %}
