{{ config(materialized='ephemeral') }}
select plan_id, plan_name, {{ dollars('monthly_cents') }} as monthly_dollars from {{ ref('plans') }}
