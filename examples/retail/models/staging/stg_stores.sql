select
    id as store_id,
    name as store_name,
    city,
    region,
    store_type,
    opened_on
from {{ source('shop', 'stores') }}
