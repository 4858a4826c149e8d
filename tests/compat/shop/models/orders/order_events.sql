{{ config(materialized='incremental', incremental_strategy='append') }}

-- Every status seen, one row per order and build that saw it change.
select
    order_id,
    status,
    updated_at,
    {{ var('build_round') }} as build_round
from {{ ref('int_orders') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
