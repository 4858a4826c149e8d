-- MRR from subscriptions reconciles with the money: at each month end, every paid period
-- then running has a successful payment within its billing cycle (plus the three days a failed
-- payment waits for its retry), or a failed one in the last three days, waiting for its retry;
-- and the MRR those payments imply is the month's MRR in mart_mrr.
with running as (
    select m.month, m.month_end, p.subscription_id, p.billing_cycle
    from {{ ref('int_month_ends') }} as m
    join {{ ref('int_subscription_periods') }} as p
        on p.start_date <= m.month_end
        and (p.end_date is null or p.end_date > m.month_end)
    where not p.is_trial
),

paid as (
    select
        r.month,
        r.subscription_id,
        max(t.amount / case when r.billing_cycle = 'annual' then 12 else 1 end) as implied_mrr
    from running as r
    join {{ ref('stg_transactions') }} as t
        on t.subscription_id = r.subscription_id
        and t.transaction_type = 'payment'
        and (t.status = 'succeeded' or t.created_date > r.month_end - interval '3 days')
        and t.created_date <= r.month_end
        and t.created_date > r.month_end - interval '35 days'
            - case when r.billing_cycle = 'annual' then interval '335 days' else interval '0 days' end
    group by r.month, r.subscription_id
),

implied as (
    select r.month, count(*) as running, count(p.subscription_id) as with_payment,
        coalesce(sum(p.implied_mrr), 0) as implied_mrr
    from running as r
    left join paid as p on p.month = r.month and p.subscription_id = r.subscription_id
    group by r.month
)

select i.month, i.running, i.with_payment, i.implied_mrr, m.mrr
from implied as i
left join {{ ref('mart_mrr') }} as m on m.month = i.month
where i.running <> i.with_payment
   or m.mrr is null
   or abs(i.implied_mrr - m.mrr) > 0.05
