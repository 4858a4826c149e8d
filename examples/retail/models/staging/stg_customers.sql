select
    id as customer_id,
    lower(trim(email)) as email,
    first_name,
    last_name,
    segment,
    city,
    country,
    created_at,
    updated_at
from {{ source('shop', 'customers') }}
