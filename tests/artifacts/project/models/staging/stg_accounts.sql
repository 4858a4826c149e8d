select account_id, plan_id, cast(signed_up_at as timestamp) as signed_up_at
from {{ source('app', 'accounts') }}
