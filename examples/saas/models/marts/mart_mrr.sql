-- Monthly recurring revenue at each month end, and what moved it since the month before:
--   mrr = previous month's mrr + new + expansion + reactivation + contraction + churned
-- (contraction and churned are negative). Churn rates are against the month before.
with movements as (
    select
        month,
        sum(mrr) as mrr,
        sum(previous_mrr) as previous_mrr,
        count(case when mrr > 0 then 1 end) as paying_accounts,
        count(case when previous_mrr > 0 then 1 end) as previous_paying_accounts,
        sum(case when movement = 'new' then mrr_change else 0 end) as new_mrr,
        sum(case when movement = 'expansion' then mrr_change else 0 end) as expansion_mrr,
        sum(case when movement = 'reactivation' then mrr_change else 0 end) as reactivation_mrr,
        sum(case when movement = 'contraction' then mrr_change else 0 end) as contraction_mrr,
        sum(case when movement = 'churn' then mrr_change else 0 end) as churned_mrr,
        count(case when movement = 'new' then 1 end) as new_accounts,
        count(case when movement = 'reactivation' then 1 end) as reactivated_accounts,
        count(case when movement = 'churn' then 1 end) as churned_accounts
    from {{ ref('int_account_mrr_monthly') }}
    group by month
)

select
    month,
    round(mrr, 2) as mrr,
    round(previous_mrr, 2) as previous_mrr,
    round(new_mrr, 2) as new_mrr,
    round(expansion_mrr, 2) as expansion_mrr,
    round(reactivation_mrr, 2) as reactivation_mrr,
    round(contraction_mrr, 2) as contraction_mrr,
    round(churned_mrr, 2) as churned_mrr,
    round(mrr - previous_mrr, 2) as net_new_mrr,
    paying_accounts,
    previous_paying_accounts,
    new_accounts,
    reactivated_accounts,
    churned_accounts,
    case when previous_paying_accounts > 0
        then round(cast(churned_accounts as double) / previous_paying_accounts, 4) end
        as logo_churn_rate,
    case when previous_mrr > 0
        then round(abs(churned_mrr + contraction_mrr) / previous_mrr, 4) end
        as revenue_churn_rate
from movements
