-- In-store sales by day and store, with the region.
select
    f.order_date,
    s.store_id,
    s.store_name,
    s.region,
    count(distinct f.order_id) as orders,
    sum(f.quantity) as units,
    round(sum(f.net_amount), 2) as net_revenue
from {{ ref('fact_orders') }} as f
join {{ ref('dim_stores') }} as s on s.store_id = f.store_id
where f.channel = 'store' and f.status <> 'cancelled'
group by f.order_date, s.store_id, s.store_name, s.region
