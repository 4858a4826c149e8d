-- The price list.
select
    plan_id,
    plan_name,
    tier,
    cast(monthly_price as double) as monthly_price,
    cast(annual_price as double) as annual_price,
    round(100 * (1 - cast(annual_price as double) / (12 * cast(monthly_price as double))), 1)
        as annual_discount_pct
from {{ ref('plans') }}
