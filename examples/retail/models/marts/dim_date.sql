-- The calendar, 2024 to 2027: one row per day.
with days as (
    select d as date_day
    from unnest(generate_series(date '2024-01-01', date '2027-12-31', interval '1 day')) as t(d)
)
select
    cast(to_char(date_day, '%Y%m%d') as int) as date_key,
    date_day,
    cast(date_part('year', date_day) as int) as year,
    cast(date_part('quarter', date_day) as int) as quarter,
    cast(date_part('month', date_day) as int) as month,
    to_char(date_day, '%B') as month_name,
    cast(date_part('isodow', date_day) as int) as day_of_week,
    to_char(date_day, '%A') as day_name,
    cast(date_trunc('week', date_day) as date) as week_start,
    cast(date_trunc('month', date_day) as date) as month_start,
    date_part('isodow', date_day) >= 6 as is_weekend
from days
