with

landed as (

    select *
    from {{ read_landing('landing', 'gym_logins', this if is_incremental() else none) }}

),

final as (

    select
        mac_address,
        gym,
        login,
        logout,
        modified_at,
        {{ load_time() }} as load_time,
        source_file
    from landed

)

select * from final
