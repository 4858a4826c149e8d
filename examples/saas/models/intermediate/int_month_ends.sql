-- The month ends the data covers: where MRR is measured.
{{ config(materialized='ephemeral') }}
select date_day as month_end, month_start as month
from {{ ref('dim_date') }}
where is_month_end
  and date_day between date '{{ var("data_start") }}' and date '{{ var("data_end") }}'
