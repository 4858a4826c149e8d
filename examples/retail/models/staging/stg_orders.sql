select
    id as order_id,
    customer_id,
    store_id,
    channel,
    status,
    placed_at,
    cast(placed_at as date) as order_date,
    updated_at
from {{ source('shop', 'orders') }}
