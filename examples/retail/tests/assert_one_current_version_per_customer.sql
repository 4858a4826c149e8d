-- SCD2: every customer has exactly one current version, and versions do not overlap.
select customer_id, count(*) as current_versions
from {{ ref('dim_customers') }}
where is_current
group by customer_id
having count(*) <> 1
union all
select a.customer_id, 0
from {{ ref('dim_customers') }} as a
join {{ ref('dim_customers') }} as b
    on a.customer_id = b.customer_id and a.version + 1 = b.version
where a.valid_to is null or a.valid_to <> b.valid_from
