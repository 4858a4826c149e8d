select plan_name, count(*) as accounts from {{ ref('accounts') }} group by 1
