select a.account_id, a.signed_up_at, p.plan_name, p.monthly_dollars
from {{ ref('stg_accounts') }} a
join {{ ref('plan_prices') }} p on p.plan_id = a.plan_id
