{#-
    Incremental: each run reads only order lines loaded since the last run (`_loaded_at`), so a
    daily run touches only new data; late-arriving lines are picked up on the day they land.
-#}
{{
    config(
        materialized='incremental',
        unique_key='order_item_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}
    {% if is_incremental() %}
    where _loaded_at > (select max(_loaded_at) from {{ this }})
    {% endif %}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

),

final as (

    select
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        orders.customer_id,
        products.category as product_category,
        cast(order_items.quantity as integer) as quantity,
        cast(order_items.unit_price as decimal(18, 2)) as unit_price,
        cast(order_items.quantity * order_items.unit_price as decimal(18, 2)) as line_amount,
        cast(orders.ordered_at as date) as order_date,
        orders.ordered_at,
        order_items._loaded_at

    from order_items
    left join orders
        on order_items.order_id = orders.order_id
    left join products
        on order_items.product_id = products.product_id

)

select * from final
