with

products as (

    select * from {{ ref('stg_shop__products') }}

),

order_items as (

    select * from {{ ref('fct_order_items') }}

),

product_sales as (

    select
        product_id,
        count(distinct order_id) as order_count,
        sum(quantity) as units_sold,
        sum(line_amount) as gross_revenue

    from order_items
    group by 1

),

final as (

    select
        products.product_id,
        products.product_name,
        products.category as product_category,
        cast(products.unit_price as decimal(18, 2)) as unit_price,
        cast(coalesce(product_sales.order_count, 0) as integer) as order_count,
        cast(coalesce(product_sales.units_sold, 0) as integer) as units_sold,
        cast(coalesce(product_sales.gross_revenue, 0) as decimal(18, 2)) as gross_revenue,
        products.is_active,
        products.updated_at

    from products
    left join product_sales
        on products.product_id = product_sales.product_id

)

select * from final
