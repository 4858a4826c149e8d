-- Retention by signup cohort: for each month since the cohort signed up, how many of the
-- accounts that had paid by then still pay (logo churn), and how much of the MRR they started
-- with is still there (revenue churn).
with cohorts as (
    select account_id, signup_cohort
    from {{ ref('dim_account') }}
),

cohort_sizes as (
    select signup_cohort, count(*) as cohort_accounts
    from cohorts
    group by signup_cohort
),

starting as (
    -- Each account's MRR at the first month end it paid.
    select account_id, mrr as starting_mrr
    from (
        select account_id, mrr, row_number() over (partition by account_id order by month_end) as n
        from {{ ref('int_account_mrr_monthly') }}
        where mrr > 0
    )
    where n = 1
),

by_month as (
    select
        c.signup_cohort,
        m.month,
        count(case when m.has_paid then 1 end) as paid_accounts,
        count(case when m.mrr > 0 then 1 end) as paying_accounts,
        sum(m.mrr) as mrr,
        sum(case when m.has_paid then s.starting_mrr else 0 end) as starting_mrr
    from {{ ref('int_account_mrr_monthly') }} as m
    join cohorts as c on c.account_id = m.account_id
    left join starting as s on s.account_id = m.account_id
    group by c.signup_cohort, m.month
)

select
    b.signup_cohort,
    b.month,
    cast(
        (date_part('year', b.month) - date_part('year', b.signup_cohort)) * 12
        + date_part('month', b.month) - date_part('month', b.signup_cohort)
        as int
    ) as months_since_signup,
    z.cohort_accounts,
    b.paid_accounts,
    b.paying_accounts,
    b.paid_accounts - b.paying_accounts as churned_accounts,
    round(b.mrr, 2) as mrr,
    round(b.starting_mrr, 2) as starting_mrr,
    case when b.paid_accounts > 0
        then round(cast(b.paid_accounts - b.paying_accounts as double) / b.paid_accounts, 4) end
        as logo_churn_rate,
    case when b.starting_mrr > 0
        then round(1 - b.mrr / b.starting_mrr, 4) end
        as revenue_churn_rate
from by_month as b
join cohort_sizes as z on z.signup_cohort = b.signup_cohort
