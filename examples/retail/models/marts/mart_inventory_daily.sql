-- Stock by day and store: units on hand and on order, products out of stock or low, and the
-- units the store sold that day.
with stock as (
    select
        i.snapshot_date,
        i.store_id,
        count(*) as products_carried,
        sum(i.on_hand) as units_on_hand,
        sum(i.on_order) as units_on_order,
        count(case when i.on_hand = 0 then 1 end) as products_out_of_stock,
        count(case when i.on_hand > 0 and i.on_order > 0 then 1 end) as products_low
    from {{ ref('stg_inventory') }} as i
    group by i.snapshot_date, i.store_id
),

sold as (
    select order_date, store_id, sum(quantity) as units_sold
    from {{ ref('fact_orders') }}
    where channel = 'store' and status <> 'cancelled'
    group by order_date, store_id
)

select
    k.snapshot_date,
    cast(to_char(k.snapshot_date, '%Y%m%d') as int) as date_key,
    k.store_id,
    s.store_name,
    s.region,
    k.products_carried,
    k.units_on_hand,
    k.units_on_order,
    k.products_out_of_stock,
    k.products_low,
    round(cast(k.products_out_of_stock as double) / k.products_carried, 4) as out_of_stock_rate,
    coalesce(d.units_sold, 0) as units_sold
from stock as k
join {{ ref('dim_stores') }} as s on s.store_id = k.store_id
left join sold as d on d.store_id = k.store_id and d.order_date = k.snapshot_date
