with source as (
    select * from {{ ref('products') }}
)

select
    product_id,
    name as product_name,
    category,
    cast(unit_price as double precision) as unit_price
from source
