with customer_orders as (
    select
        customer_id,
        min(order_date) as first_order,
        max(order_date) as most_recent_order,
        count(*) as number_of_orders,
        sum(case when status in (
            {%- for s in var('revenue_statuses') %}'{{ s }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        ) then amount else 0 end) as lifetime_value
    from {{ ref('orders') }}
    group by customer_id
)

select
    c.customer_id,
    c.first_name,
    c.last_name,
    c.signup_date,
    co.first_order,
    co.most_recent_order,
    coalesce(co.number_of_orders, 0) as number_of_orders,
    coalesce(co.lifetime_value, 0) as lifetime_value,
    -- average order value in dollars
    round(coalesce(co.lifetime_value, 0) / nullif(co.number_of_orders, 0), 2) as average_order_value
from {{ ref('stg_customers') }} as c
left join customer_orders as co on co.customer_id = c.customer_id
