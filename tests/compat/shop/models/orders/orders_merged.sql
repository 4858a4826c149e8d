{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='merge') }}

-- The latest version of each order: a later build merges the orders updated since.
select
    order_id,
    customer,
    status,
    amount,
    note,
    note_text,
    updated_at
from {{ ref('int_orders') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
