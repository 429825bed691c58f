with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

final as (

    select
        order_id,
        count(*) as line_count,
        sum(quantity) as item_count,
        sum(quantity * unit_price) as order_amount,
        max(_loaded_at) as items_loaded_at

    from order_items
    group by 1

)

select * from final
