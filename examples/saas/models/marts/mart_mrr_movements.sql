-- MRR movements in long form: one row per month and kind of movement, for stacked charts.
select
    month,
    movement,
    round(sum(mrr_change), 2) as mrr_change,
    count(*) as accounts
from {{ ref('int_account_mrr_monthly') }}
where movement in ('new', 'expansion', 'reactivation', 'contraction', 'churn')
group by month, movement
