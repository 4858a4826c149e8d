-- The daily mart holds every line of the fact that is not cancelled: the totals agree.
with lines as (
    select order_date, channel, round(sum(net_amount), 2) as net_revenue, count(*) as lines
    from {{ ref('fact_orders') }}
    where status <> 'cancelled'
    group by order_date, channel
)
select l.order_date, l.channel, l.net_revenue, m.net_revenue as mart_net_revenue
from lines as l
full join {{ ref('mart_daily_sales') }} as m
    on m.order_date = l.order_date and m.channel = l.channel
where m.order_date is null or l.order_date is null
   or abs(l.net_revenue - m.net_revenue) > 0.01 or l.lines <> m.lines
