-- The incremental line fact and the order fact must agree on every order's amount: a missed or
-- duplicated incremental load shows up here.
with

lines as (

    select
        order_id,
        sum(line_amount) as line_amount

    from {{ ref('fct_order_items') }}
    group by 1

),

orders as (

    select * from {{ ref('fct_orders') }}
    where line_count > 0

)

select
    orders.order_id,
    orders.order_amount,
    lines.line_amount

from orders
left join lines
    on orders.order_id = lines.order_id
where lines.line_amount is null or lines.line_amount <> orders.order_amount
