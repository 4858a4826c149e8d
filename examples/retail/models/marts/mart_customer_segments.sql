-- Net revenue by the segment customers were in when they ordered (the SCD2 version), by month.
select
    cast(date_trunc('month', order_date) as date) as month,
    customer_segment,
    count(distinct customer_id) as customers,
    count(distinct order_id) as orders,
    round(sum(net_amount), 2) as net_revenue
from {{ ref('fact_orders') }}
where status <> 'cancelled'
group by cast(date_trunc('month', order_date) as date), customer_segment
