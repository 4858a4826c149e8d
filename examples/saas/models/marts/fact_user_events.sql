-- Product events, appended as new files load. Events of accounts that do not exist and events
-- without a type are set aside in gold_quarantine.fact_user_events.
{{ config(
    materialized='incremental',
    unique_key='event_id',
    quarantine=[{'not_null': ['account_id', 'event_type']}],
) }}

select
    e.event_id,
    a.account_id,
    e.account_id as source_account_id,
    cast(to_char(e.occurred_at, '%Y%m%d') as int) as date_key,
    e.occurred_at,
    e.event_type,
    e.page,
    e.feature,
    e.session_id,
    e.device,
    e.loaded_at
from {{ ref('stg_user_events') }} as e
left join {{ ref('stg_accounts') }} as a on a.account_id = e.account_id
{% if is_incremental() %}
where e.loaded_at > (select max(loaded_at) from {{ this }})
{% endif %}
