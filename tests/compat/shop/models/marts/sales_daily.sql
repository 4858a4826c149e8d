{% set channels = ['web', 'shop', 'phone'] %}

with sales as (
    select * from {{ ref('fct_sales') }}
)

select
    store_id,
    sold_on,
    {% for channel in channels -%}
    {{ round_to("sum(case when channel = '" ~ channel ~ "' then revenue else 0 end)", 2) }} as {{ channel }}_revenue,
    {% endfor -%}
    count(*) as n_sales,
    {{ round_to('sum(revenue)', 2) }} as revenue
from sales
group by store_id, sold_on
