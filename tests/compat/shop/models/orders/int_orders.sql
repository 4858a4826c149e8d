{{ config(materialized='ephemeral') }}

-- The order feed, cleaned; inlined into the models that use it.
select
    order_id,
    customer,
    lower(trim(status)) as status,
    amount,
    note,
    coalesce(note, '') as note_text,
    cast(updated_at as timestamp) as updated_at
from {{ ref('order_feed') }}
