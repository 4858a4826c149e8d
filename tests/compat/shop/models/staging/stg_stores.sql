select
    store_id,
    city,
    cast(opened_on as date) as opened_on,
    is_flagship
from {{ ref('stores') }}
