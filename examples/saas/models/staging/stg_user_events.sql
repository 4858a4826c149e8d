select
    event_id,
    user_id as account_id,
    event_type,
    page,
    feature,
    session_id,
    device,
    cast(occurred_at as timestamp) as occurred_at,
    _strata_loaded_at as loaded_at
from {{ source('app', 'user_events') }}
