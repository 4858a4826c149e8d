{% set categories = ['tea', 'coffee', 'cocoa'] %}

with sales as (
    select * from {{ ref('fct_sales') }}
),

stores as (
    select * from {{ ref('stg_stores') }}
),

per_store as (
    select
        store_id,
        {% for c in categories %}
        sum(case when category = '{{ c }}' then quantity else 0 end) as {{ c }}_units,
        {% endfor %}
        count(distinct sold_on) as active_days,
        {{ round_to('sum(revenue)', 2) }} as revenue,
        min(sold_on) as first_sale_on
    from sales
    group by store_id
)

select
    stores.store_id,
    stores.city,
    stores.is_flagship,
    stores.opened_on,
    per_store.active_days,
    per_store.revenue,
    {{ round_to('per_store.revenue / per_store.active_days', 4) }} as revenue_per_active_day,
    per_store.first_sale_on,
    {% for c in categories -%}
    per_store.{{ c }}_units{% if not loop.last %},{% endif %}
    {% endfor %}
from stores
left join per_store on per_store.store_id = stores.store_id
