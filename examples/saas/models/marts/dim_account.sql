-- One row per account: who they are, when they signed up, and where they stand at the end
-- of the data (status, plan, MRR).
with periods as (
    select * from {{ ref('int_subscription_periods') }}
),

latest as (
    select *
    from (
        select
            *,
            row_number() over (partition by account_id order by start_date desc, subscription_id desc) as n
        from periods
    )
    where n = 1
),

first_paid as (
    select account_id, min(start_date) as first_paid_date
    from periods
    where not is_trial
    group by account_id
)

select
    a.account_id,
    a.email,
    a.full_name,
    a.company,
    a.country,
    a.industry,
    a.company_size,
    a.acquisition_channel,
    a.signed_up_at,
    a.signup_date,
    cast(date_trunc('month', a.signup_date) as date) as signup_cohort,
    f.first_paid_date,
    l.plan_id as current_plan_id,
    case
        when l.end_date is null and not l.is_trial then l.mrr
        else 0.0
    end as current_mrr,
    case
        when l.end_date is null and l.is_trial then 'trialing'
        when l.end_date is null then 'paying'
        when f.first_paid_date is null then 'not_converted'
        else 'churned'
    end as status
from {{ ref('stg_accounts') }} as a
left join latest as l on l.account_id = a.account_id
left join first_paid as f on f.account_id = a.account_id
