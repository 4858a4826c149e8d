{% snapshot orders_history %}
{{ config(unique_key='order_id', strategy='timestamp', updated_at='updated_at') }}
select order_id, customer, status, amount, updated_at
from {{ ref('order_feed') }}
{% endsnapshot %}
