{{ config(severity='warn', store_failures=true) }}
select id, amount from {{ ref('events') }} where amount > 100
