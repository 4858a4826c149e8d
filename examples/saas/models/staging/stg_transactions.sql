-- Payments and refunds, each once: the export repeats some lines, the first copy wins.
with numbered as (
    select
        *,
        row_number() over (partition by transaction_id order by _strata_loaded_at, _strata_source) as copy
    from {{ source('app', 'transactions') }}
)
select
    transaction_id,
    subscription_id,
    user_id as account_id,
    type as transaction_type,
    status,
    cast(amount as double) as amount,
    currency,
    failure_reason,
    refunded_transaction_id,
    cast(created_at as timestamp) as created_at,
    cast(cast(created_at as timestamp) as date) as created_date
from numbered
where copy = 1
