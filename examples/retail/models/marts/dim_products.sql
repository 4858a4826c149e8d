select
    product_id,
    sku,
    product_name,
    category,
    brand,
    unit_price,
    unit_cost,
    round(1 - unit_cost / unit_price, 4) as margin_rate,
    is_active
from {{ ref('stg_products') }}
