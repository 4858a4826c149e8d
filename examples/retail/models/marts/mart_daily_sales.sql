-- Sales by day and channel: what was ordered (cancelled orders left out), what came back.
select
    f.order_date,
    f.date_key,
    f.channel,
    count(distinct f.order_id) as orders,
    count(*) as lines,
    sum(f.quantity) as units,
    round(sum(f.gross_amount), 2) as gross_revenue,
    round(sum(f.discount_amount), 2) as discounts,
    round(sum(f.net_amount), 2) as net_revenue,
    round(sum(case when f.status = 'returned' then f.net_amount else 0 end), 2) as returned_revenue,
    count(distinct case when f.status = 'returned' then f.order_id end) as returned_orders
from {{ ref('fact_orders') }} as f
where f.status <> 'cancelled'
group by f.order_date, f.date_key, f.channel
