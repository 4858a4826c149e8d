-- Order lines: one row per item, with the customer's version (SCD2) at the time of the order.
-- Loaded incrementally: the lines of orders that changed since the last run, merged by key
-- (a status that moves updates its lines). Lines without a quantity are set aside in
-- gold_quarantine.fact_orders.
{{ config(
    materialized='incremental',
    unique_key='order_item_id',
    incremental_strategy='merge',
    quarantine=[{'expression': 'quantity > 0'}, {'not_null': ['customer_key', 'product_id']}],
) }}

with orders as (
    select * from {{ ref('stg_orders') }}
    {% if is_incremental() %}
    where updated_at > (select max(order_updated_at) from {{ this }})
    {% endif %}
)

select
    i.order_item_id,
    o.order_id,
    i.line_number,
    cast(to_char(o.order_date, '%Y%m%d') as int) as date_key,
    o.order_date,
    o.placed_at,
    c.customer_key,
    o.customer_id,
    c.segment as customer_segment,
    i.product_id,
    o.store_id,
    o.channel,
    o.status,
    i.quantity,
    i.unit_price,
    i.discount_amount,
    round(i.quantity * i.unit_price, 2) as gross_amount,
    round(i.quantity * i.unit_price - i.discount_amount, 2) as net_amount,
    o.updated_at as order_updated_at
from orders as o
join {{ ref('stg_order_items') }} as i on i.order_id = o.order_id
left join {{ ref('dim_customers') }} as c
    on c.customer_id = o.customer_id
    and (o.placed_at >= c.valid_from or c.version = 1)
    and (c.valid_to is null or o.placed_at < c.valid_to)
