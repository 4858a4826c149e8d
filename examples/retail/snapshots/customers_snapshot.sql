{#- Every segment a customer has been in, and when: a new version each time the source's
    updated_at moves (the OLTP database stamps it when the segment changes). -#}
{% snapshot customers_snapshot %}
{{ config(
    target_schema='silver',
    unique_key='customer_id',
    strategy='timestamp',
    updated_at='updated_at',
) }}
select customer_id, email, first_name, last_name, segment, city, country, created_at, updated_at
from {{ ref('stg_customers') }}
{% endsnapshot %}
