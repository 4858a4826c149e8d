{{ config(materialized='incremental', unique_key='account_id') }}
select account_id, signed_up_at from {{ ref('stg_accounts') }}
{% if is_incremental() %}
where signed_up_at > (select max(signed_up_at) from {{ this }})
{% endif %}
