with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

order_totals as (

    select * from {{ ref('int_order_items_summed_to_orders') }}

),

order_payments as (

    select * from {{ ref('int_payments_pivoted_to_orders') }}

),

orders_joined as (

    select
        orders.order_id,
        orders.customer_id,
        orders.status as order_status,
        coalesce(order_totals.line_count, 0) as line_count,
        coalesce(order_totals.item_count, 0) as item_count,
        coalesce(order_totals.order_amount, 0) as order_amount,
        coalesce(order_payments.paid_amount, 0) as paid_amount,
        coalesce(order_payments.refunded_amount, 0) as refunded_amount,
        orders.ordered_at,
        orders.updated_at,
        order_payments.first_paid_at

    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join order_payments
        on orders.order_id = order_payments.order_id

),

amounts_reconciled as (

    select
        *,
        paid_amount - refunded_amount as net_paid_amount,
        case
            when order_status in ('cancelled', 'returned') then 0
            when order_amount > paid_amount then order_amount - paid_amount
            else 0
        end as outstanding_amount,
        case
            when refunded_amount > 0 and refunded_amount >= paid_amount then 'refunded'
            when refunded_amount > 0 then 'partially_refunded'
            when paid_amount = 0 then 'unpaid'
            when paid_amount < order_amount then 'partially_paid'
            else 'paid'
        end as payment_state

    from orders_joined

),

final as (

    select
        order_id,
        customer_id,
        order_status,
        payment_state,
        cast(line_count as integer) as line_count,
        cast(item_count as integer) as item_count,
        cast(order_amount as decimal(18, 2)) as order_amount,
        cast(paid_amount as decimal(18, 2)) as paid_amount,
        cast(refunded_amount as decimal(18, 2)) as refunded_amount,
        cast(net_paid_amount as decimal(18, 2)) as net_paid_amount,
        cast(outstanding_amount as decimal(18, 2)) as outstanding_amount,
        order_status not in ('cancelled', 'returned') as is_fulfillable,
        outstanding_amount = 0 as is_settled,
        cast(ordered_at as date) as order_date,
        ordered_at,
        first_paid_at,
        updated_at

    from amounts_reconciled

)

select * from final
