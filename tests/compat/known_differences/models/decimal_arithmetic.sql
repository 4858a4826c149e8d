with events as (
    select id, cast(amount as decimal(10, 2)) as amount from {{ ref('events') }}
)

select
    id,
    amount * 2 as doubled,
    amount * amount as squared,
    amount / 4 as quarter,
    round(amount, 1) as rounded,
    sum(amount) over () as total
from events
