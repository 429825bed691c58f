with

sessions as (

    select * from {{ ref('stg_web__sessions') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

session_orders as (

    -- An order is attributed to the latest session of the same customer that was open
    -- when the order was placed.
    select
        sessions.session_id,
        orders.order_id,
        orders.order_amount,
        orders.ordered_at,
        row_number() over (
            partition by orders.order_id
            order by sessions.started_at desc, sessions.session_id desc
        ) as session_rank

    from orders
    inner join sessions
        on orders.customer_id = sessions.customer_id
        and orders.ordered_at >= sessions.started_at
        and orders.ordered_at <= sessions.ended_at

),

attributed_orders as (

    select
        session_id,
        count(*) as order_count,
        sum(order_amount) as order_amount,
        min(ordered_at) as first_ordered_at

    from session_orders
    where session_rank = 1
    group by 1

),

final as (

    select
        sessions.session_id,
        sessions.customer_id,
        sessions.channel,
        sessions.device,
        sessions.landing_page,
        sessions.page_views,
        cast(coalesce(attributed_orders.order_count, 0) as integer) as order_count,
        cast(coalesce(attributed_orders.order_amount, 0) as decimal(18, 2)) as order_amount,
        cast(
            {{ dbt.datediff(
                'sessions.started_at', 'attributed_orders.first_ordered_at', 'minute'
            ) }}
            as integer
        ) as minutes_to_order,
        attributed_orders.session_id is not null as is_converted,
        cast(sessions.started_at as date) as session_date,
        sessions.started_at,
        sessions.ended_at

    from sessions
    left join attributed_orders
        on sessions.session_id = attributed_orders.session_id

)

select * from final
