-- Each account's MRR at each month end, from its first paid period on, and how it moved
-- since the month before:
--   new          0 before, some now, and never paying at a month end before
--   reactivation 0 before, some now, and paying at an earlier month end
--   expansion    more than before      contraction  less, but not 0
--   churn        some before, 0 now    retained / inactive  no change
with paid as (
    select account_id, start_date, end_date, mrr
    from {{ ref('int_subscription_periods') }}
    where not is_trial
),

first_paid as (
    select account_id, min(start_date) as first_paid_date
    from paid
    group by account_id
),

spine as (
    select f.account_id, m.month_end, m.month
    from first_paid as f
    join {{ ref('int_month_ends') }} as m on m.month_end >= f.first_paid_date
),

mrr as (
    select
        s.account_id,
        s.month_end,
        s.month,
        coalesce(sum(p.mrr), 0.0) as mrr
    from spine as s
    left join paid as p
        on p.account_id = s.account_id
        and p.start_date <= s.month_end
        and (p.end_date is null or p.end_date > s.month_end)
    group by s.account_id, s.month_end, s.month
),

compared as (
    select
        *,
        coalesce(lag(mrr) over (partition by account_id order by month_end), 0.0) as previous_mrr,
        coalesce(
            max(case when mrr > 0 then 1 else 0 end) over (
                partition by account_id order by month_end
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) = 1 as paid_before
    from mrr
)

select
    account_id,
    month,
    month_end,
    mrr,
    previous_mrr,
    mrr - previous_mrr as mrr_change,
    paid_before or mrr > 0 as has_paid,
    case
        when previous_mrr = 0 and mrr > 0 and not paid_before then 'new'
        when previous_mrr = 0 and mrr > 0 then 'reactivation'
        when previous_mrr > 0 and mrr = 0 then 'churn'
        when mrr > previous_mrr then 'expansion'
        when mrr < previous_mrr then 'contraction'
        when mrr > 0 then 'retained'
        else 'inactive'
    end as movement
from compared
