{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['mac_address', 'gym', 'login']
    )
}}

with

gym_logins as (

    select *
    from {{ ref('gym_logins_bz') }}
    where
        mac_address is not null
        and gym is not null
        and login is not null

),

{% if is_incremental() %}
-- visits with a row version loaded since the last run are recomputed from all their versions
changed_visits as (

    select distinct mac_address, gym, login
    from gym_logins
    where {{ loaded_since_last_run() }}

),

versions as (

    select g.*
    from gym_logins as g
    semi join changed_visits as c
        on
            g.mac_address = c.mac_address
            and g.gym = c.gym
            and g.login = c.login

),
{% else %}
versions as (

    select * from gym_logins

),
{% endif %}

visits as (

    select
        mac_address,
        gym,
        login,
        -- the logout of the latest version (by modified_at) whose logout is set and after login
        max_by(logout, {{ ordering_tuple(['modified_at', 'logout']) }}) filter (where logout > login) as logout,
        max(modified_at) as modified_at,
        max(load_time) as load_time
    from versions
    group by mac_address, gym, login

),

final as (

    select * from visits

)

select * from final
