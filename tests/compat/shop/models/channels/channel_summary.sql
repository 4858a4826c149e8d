-- Sales per channel, labelled by the shop_utils package; channels without sales stay.
with sales as (
    select * from {{ ref('fct_sales') }}
)

select
    labels.channel,
    labels.label,
    labels.sort_order,
    count(sales.sale_id) as n_sales,
    sum(sales.quantity) as units,
    {{ shop_utils.safe_ratio('sum(sales.revenue)', 'sum(sales.quantity)', 3) }} as revenue_per_unit
from {{ ref('shop_utils', 'channel_labels') }} as labels
left join sales on sales.channel = labels.channel
group by labels.channel, labels.label, labels.sort_order
