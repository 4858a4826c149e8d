{{ config(severity='warn') }}

-- Orders over 100 are worth a look, not a failed build.
select order_id, amount
from {{ ref('orders_merged') }}
where amount > 100
