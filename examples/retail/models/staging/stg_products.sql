select
    id as product_id,
    sku,
    name as product_name,
    category,
    brand,
    cast(unit_price as double) as unit_price,
    cast(unit_cost as double) as unit_cost,
    active as is_active
from {{ source('shop', 'products') }}
