-- Every version of each customer's contact details (a type 2 slowly changing dimension):
-- `strata snapshot` (or `strata build`) adds a version when an email changes, and closes the
-- previous one (dbt_valid_from / dbt_valid_to).
{% snapshot customers_history %}
{{ config(unique_key='customer_id', strategy='check', check_cols=['email'], schema='silver') }}
select customer_id, first_name, last_name, email from {{ ref('stg_customers') }}
{% endsnapshot %}
