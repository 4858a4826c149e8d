select
    id as order_item_id,
    order_id,
    line_number,
    product_id,
    quantity,
    cast(unit_price as double) as unit_price,
    cast(discount_amount as double) as discount_amount
from {{ source('shop', 'order_items') }}
