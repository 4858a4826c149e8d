select
    store_id,
    product_id,
    snapshot_date,
    on_hand,
    on_order
from {{ source('shop', 'inventory_daily') }}
