-- Each month's MRR is the month before's plus its movements.
select month, mrr, previous_mrr, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, churned_mrr
from {{ ref('mart_mrr') }}
where abs(previous_mrr + new_mrr + expansion_mrr + reactivation_mrr + contraction_mrr + churned_mrr - mrr) > 0.05
