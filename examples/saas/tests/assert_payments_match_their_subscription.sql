-- A successful payment charges its subscription's amount; a refund gives back a payment of
-- the same subscription, at most what was paid, after it was paid.
select t.transaction_id, t.transaction_type, t.amount, s.amount as subscription_amount
from {{ ref('stg_transactions') }} as t
join {{ ref('stg_subscriptions') }} as s on s.subscription_id = t.subscription_id
left join {{ ref('stg_transactions') }} as paid on paid.transaction_id = t.refunded_transaction_id
where (t.transaction_type = 'payment' and t.status = 'succeeded' and abs(t.amount - s.amount) > 0.005)
   or (t.transaction_type = 'refund' and (
        paid.transaction_id is null
        or paid.subscription_id <> t.subscription_id
        or t.amount > paid.amount + 0.005
        or t.created_at < paid.created_at))
