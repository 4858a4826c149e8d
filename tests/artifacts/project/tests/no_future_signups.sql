select * from {{ ref('signups') }} where signed_up_at > now()
