-- Every order of the feed has its row in orders_merged.
select feed.order_id
from {{ ref('order_feed') }} as feed
left join {{ ref('orders_merged') }} as merged on merged.order_id = feed.order_id
where merged.order_id is null
