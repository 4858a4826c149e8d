{% snapshot accounts_history %}
{{ config(unique_key='account_id', strategy='check', check_cols=['plan_id']) }}
select * from {{ ref('stg_accounts') }}
{% endsnapshot %}
