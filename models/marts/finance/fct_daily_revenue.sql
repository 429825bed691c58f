with

orders as (

    select * from {{ ref('fct_orders') }}

),

refunds as (

    select * from {{ ref('stg_payments__refunds') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

orders_by_day as (

    select
        order_date as revenue_date,
        count(*) as order_count,
        sum(case when is_fulfillable then order_amount else 0 end) as gross_revenue,
        count(distinct customer_id) as customer_count

    from orders
    group by 1

),

refunds_by_day as (

    select
        cast(created_at as date) as revenue_date,
        count(*) as refund_count,
        sum(amount) as refunded_amount

    from refunds
    group by 1

),

first_orders_by_day as (

    select
        cast(first_ordered_at as date) as revenue_date,
        count(*) as new_customer_count

    from customers
    where first_ordered_at is not null
    group by 1

),

days as (

    select revenue_date from orders_by_day
    union
    select revenue_date from refunds_by_day

),

final as (

    select
        days.revenue_date,
        cast(coalesce(orders_by_day.order_count, 0) as integer) as order_count,
        cast(coalesce(orders_by_day.customer_count, 0) as integer) as customer_count,
        cast(coalesce(first_orders_by_day.new_customer_count, 0) as integer) as new_customer_count,
        cast(coalesce(refunds_by_day.refund_count, 0) as integer) as refund_count,
        cast(coalesce(orders_by_day.gross_revenue, 0) as decimal(18, 2)) as gross_revenue,
        cast(coalesce(refunds_by_day.refunded_amount, 0) as decimal(18, 2)) as refunded_amount,
        cast(
            coalesce(orders_by_day.gross_revenue, 0) - coalesce(refunds_by_day.refunded_amount, 0)
            as decimal(18, 2)
        ) as net_revenue

    from days
    left join orders_by_day
        on days.revenue_date = orders_by_day.revenue_date
    left join refunds_by_day
        on days.revenue_date = refunds_by_day.revenue_date
    left join first_orders_by_day
        on days.revenue_date = first_orders_by_day.revenue_date

)

select * from final
