-- Every customer, with or without orders: counts are 0, sums are NULL when there is nothing.
with orders as (
    select * from {{ ref('int_orders') }}
)

select
    customers.customer,
    customers.tier,
    customers.email,
    count(orders.order_id) as n_orders,
    sum(case when orders.status = 'cancelled' then 0 else orders.amount end) as kept_amount,
    sum(case when orders.status = 'returned' then orders.amount end) as returned_amount,
    count(orders.note) as n_notes,
    max(orders.note) as last_note,
    min(orders.note_text) as first_note_text,
    cast(max(orders.amount) as decimal(10, 2)) as largest_amount,
    {{ shop_utils.safe_ratio('sum(orders.amount)', 'count(orders.order_id)') }} as avg_amount
from {{ ref('customers') }} as customers
left join orders on orders.customer = customers.customer
group by customers.customer, customers.tier, customers.email
