select
    id as event_id,
    customer_id,
    session_id,
    event_type,
    product_id,
    occurred_at,
    cast(occurred_at as date) as event_date
from {{ source('shop', 'web_events') }}
