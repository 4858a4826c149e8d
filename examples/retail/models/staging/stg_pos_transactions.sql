select
    id as pos_transaction_id,
    store_id,
    order_id,
    kind,
    cast(amount as double) as amount,
    payment_method,
    transacted_at,
    cast(transacted_at as date) as transaction_date
from {{ source('shop', 'pos_transactions') }}
