-- Every subscription period with its plan, and the last day it was active.
select
    s.subscription_id,
    s.account_id,
    s.plan_id,
    p.plan_name,
    p.tier as plan_tier,
    s.billing_cycle,
    s.amount,
    s.mrr,
    s.is_trial,
    s.status,
    s.cancel_reason,
    s.start_date,
    s.end_date,
    -- The last day the period was active (end_date is the first day it was not).
    cast(coalesce(s.end_date, date '{{ var("data_end") }}' + interval '1 day') - interval '1 day' as date)
        as last_active_date
from {{ ref('stg_subscriptions') }} as s
join {{ ref('plans') }} as p on p.plan_id = s.plan_id
