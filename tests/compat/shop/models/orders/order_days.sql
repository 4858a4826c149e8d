{{ config(materialized='incremental', unique_key='order_day', incremental_strategy='delete+insert') }}

-- Updates per day; a later build recomputes the last day it has and the days after it.
select
    cast(updated_at as date) as order_day,
    count(*) as n_updates,
    sum(amount) as amount
from {{ ref('int_orders') }}
{% if is_incremental() %}
where cast(updated_at as date) >= (select max(order_day) from {{ this }})
{% endif %}
group by cast(updated_at as date)
