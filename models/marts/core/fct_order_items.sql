{#-
    Incremental: each run reads only order lines loaded since the last run (`_loaded_at`), so a
    daily run touches only new data; late-arriving lines are picked up on the day they land.

    Daily partitions by order day (`meta.partitions`, read by the Dagster definitions): a run for
    a partition range passes `--vars '{"min_date": "YYYY-MM-DD", "max_date": "YYYY-MM-DD"}'` and
    rebuilds every line of the orders placed on those days (both included), whenever loaded. A
    run without partitions (landing sensor, daily schedule) records the days (`column`) of the
    lines it wrote (`loaded_at_field` above the previous newest) as materialised partitions.
-#}
{{
    config(
        materialized='incremental',
        unique_key='order_item_id',
        on_schema_change='fail',
        meta={'partitions': {
            'daily_start': '2025-01-01', 'column': 'order_date', 'loaded_at_field': '_loaded_at',
        }},
    )
}}

{%- set min_date = var('min_date', none) -%}
{%- set max_date = var('max_date', none) -%}
{%- if (min_date is none) != (max_date is none) -%}
    {{ exceptions.raise_compiler_error(
        "fct_order_items: pass both vars min_date and max_date (a partition range), got min_date="
        ~ min_date ~ ", max_date=" ~ max_date) }}
{%- endif -%}
{%- for value in [min_date, max_date] if value is not none -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
        {{ exceptions.raise_compiler_error(
            "fct_order_items: vars min_date/max_date must be dates as YYYY-MM-DD, got "
            ~ value) }}
    {%- endif -%}
{%- endfor %}

with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}
    {% if min_date is not none %}
    where order_id in (
        select order_id from {{ ref('stg_shop__orders') }}
        where cast(ordered_at as date) between cast('{{ min_date }}' as date)
            and cast('{{ max_date }}' as date)
    )
    {% elif is_incremental() %}
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
        cast(products.category as {{ dbt.type_string() }}) as product_category,
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
