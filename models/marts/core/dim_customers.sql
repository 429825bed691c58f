with

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

countries as (

    select * from {{ ref('country_codes') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

customer_orders as (

    select
        customer_id,
        count(*) as order_count,
        sum(case when is_fulfillable then 1 else 0 end) as fulfillable_order_count,
        sum(net_paid_amount) as lifetime_value,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at

    from orders
    group by 1

),

final as (

    select
        customers.customer_id,
        customers.email_hash,
        customers.country_code,
        countries.country_name,
        countries.region,
        cast(coalesce(customer_orders.order_count, 0) as integer) as order_count,
        cast(coalesce(customer_orders.fulfillable_order_count, 0) as integer)
            as fulfillable_order_count,
        cast(coalesce(customer_orders.lifetime_value, 0) as decimal(18, 2)) as lifetime_value,
        coalesce(customer_orders.order_count, 0) > 1 as is_repeat_customer,
        cast({{ dbt.date_trunc('month', 'customer_orders.first_ordered_at') }} as date)
            as cohort_month,
        customers.signed_up_at,
        customer_orders.first_ordered_at,
        customer_orders.last_ordered_at

    from customers
    left join countries
        on customers.country_code = countries.country_code
    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

)

select * from final
