-- Customers as SCD type 2 on segment: one row per version, valid over [valid_from, valid_to).
select
    dbt_scd_id as customer_key,
    customer_id,
    email,
    first_name,
    last_name,
    segment,
    city,
    country,
    dbt_valid_from as valid_from,
    dbt_valid_to as valid_to,
    dbt_valid_to is null as is_current,
    row_number() over (partition by customer_id order by dbt_valid_from) as version
from {{ ref('customers_snapshot') }}
