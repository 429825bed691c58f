-- A payment is never refunded more than was paid.
with

payments as (

    select * from {{ ref('stg_payments__payments') }}

),

refunds as (

    select
        payment_id,
        sum(amount) as refunded_amount

    from {{ ref('stg_payments__refunds') }}
    group by 1

)

select
    payments.payment_id,
    payments.amount,
    refunds.refunded_amount

from refunds
inner join payments
    on refunds.payment_id = payments.payment_id
where refunds.refunded_amount > payments.amount
