{{
    config(
        incremental_strategy='delete+insert',
        unique_key='user_id'
    )
}}

with

registered_users as (

    select *
    from {{ ref('registered_users_bz') }}
    where
        user_id is not null
        and device_id is not null
        and mac_address is not null
        and registration_timestamp is not null

),

{% if is_incremental() %}
-- users with a row version loaded since the last run: only those can change
changed_users as (

    select distinct user_id
    from registered_users
    where {{ loaded_since_last_run() }}

),

candidates as (

    select r.*
    from registered_users as r
    semi join changed_users as c
        on r.user_id = c.user_id

),
{% else %}
candidates as (

    select * from registered_users

),
{% endif %}

-- first registration wins; later extracts of the same user never overwrite it
first_registration as (

    select *
    from candidates
    qualify
        row_number() over (
            partition by user_id
            order by registration_timestamp, modified_at, source_file, device_id, mac_address
        ) = 1

),

final as (

    select
        user_id,
        device_id,
        mac_address,
        registration_timestamp,
        load_time,
        source_file
    from first_registration

)

select * from final
