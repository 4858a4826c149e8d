select
    store_id,
    store_name,
    city,
    region,
    store_type,
    opened_on
from {{ ref('stg_stores') }}
