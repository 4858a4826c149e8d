-- Subscription periods: [start_date, end_date), end_date null while the period runs.
-- mrr is what the period brings in a month: the amount of a monthly cycle, a twelfth of an
-- annual one, nothing during a trial.
select
    subscription_id,
    user_id as account_id,
    plan_id,
    billing_cycle,
    cast(amount as double) as amount,
    case
        when is_trial then 0.0
        when billing_cycle = 'annual' then cast(amount as double) / 12
        else cast(amount as double)
    end as mrr,
    is_trial,
    status,
    coupon,
    cancel_reason,
    cast(started_at as timestamp) as started_at,
    cast(ended_at as timestamp) as ended_at,
    cast(cast(started_at as timestamp) as date) as start_date,
    cast(cast(ended_at as timestamp) as date) as end_date
from {{ source('app', 'subscriptions') }}
