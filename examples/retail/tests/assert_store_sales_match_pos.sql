-- In-store sales reconcile with the tills: each store order's lines add up to its POS sale.
with lines as (
    select order_id, sum(quantity * unit_price - discount_amount) as net
    from {{ ref('stg_order_items') }}
    group by order_id
),
sales as (
    select order_id, amount
    from {{ ref('stg_pos_transactions') }}
    where kind = 'sale'
)
select o.order_id, l.net, s.amount
from {{ ref('stg_orders') }} as o
join lines as l on l.order_id = o.order_id
left join sales as s on s.order_id = o.order_id
where o.channel = 'store' and (s.order_id is null or abs(l.net - s.amount) > 0.01)
