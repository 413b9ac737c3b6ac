with

landed as (

    select *
    from {{ read_landing('landing', 'registered_users', this if is_incremental() else none) }}

),

final as (

    select
        user_id,
        device_id,
        mac_address,
        registration_timestamp,
        modified_at,
        {{ load_time() }} as load_time,
        source_file
    from landed

)

select * from final
