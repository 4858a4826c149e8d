with sales as (
    select * from {{ ref('stg_sales') }}
),

products as (
    select * from {{ ref('stg_products') }}
),

joined as (
    select
        sales.sale_id,
        sales.store_id,
        sales.product_id,
        sales.sold_on,
        sales.channel,
        sales.quantity,
        products.category,
        sales.quantity * products.unit_price as revenue
    from sales
    inner join products on products.product_id = sales.product_id
)

select
    *,
    {{ with_tax('revenue') }} as revenue_with_tax,
    quantity / 2 as half_quantity
from joined
