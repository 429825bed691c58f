with

payments as (

    select * from {{ ref('stg_payments__payments') }}

),

refunds as (

    select * from {{ ref('stg_payments__refunds') }}

),

payments_aggregated as (

    select
        order_id,
        count(*) as payment_attempt_count,
        sum(case when payment_status = 'succeeded' then 1 else 0 end) as succeeded_payment_count,
        sum(case when payment_status = 'succeeded' then amount else 0 end) as paid_amount,
        min(case when payment_status = 'succeeded' then created_at end) as first_paid_at

    from payments
    group by 1

),

refunds_aggregated as (

    select
        order_id,
        count(*) as refund_count,
        sum(amount) as refunded_amount,
        max(created_at) as last_refunded_at

    from refunds
    group by 1

),

final as (

    select
        payments_aggregated.order_id,
        payments_aggregated.payment_attempt_count,
        payments_aggregated.succeeded_payment_count,
        coalesce(refunds_aggregated.refund_count, 0) as refund_count,
        payments_aggregated.paid_amount,
        coalesce(refunds_aggregated.refunded_amount, 0) as refunded_amount,
        payments_aggregated.first_paid_at,
        refunds_aggregated.last_refunded_at

    from payments_aggregated
    left join refunds_aggregated
        on payments_aggregated.order_id = refunds_aggregated.order_id

)

select * from final
