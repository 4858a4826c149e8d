-- One row per account and day with a trial or a paid plan: the grain of "who was on what".
with days as (
    select
        subscription_id,
        account_id,
        plan_id,
        billing_cycle,
        is_trial,
        mrr,
        unnest(generate_series(start_date, last_active_date, interval '1 day')) as date_day
    from {{ ref('int_subscription_periods') }}
    where last_active_date >= start_date
)

select
    cast(to_char(date_day, '%Y%m%d') as int) as date_key,
    date_day,
    account_id,
    subscription_id,
    plan_id,
    billing_cycle,
    is_trial,
    mrr
from days
