-- One row per account, with its email normalised and a country for everyone.
select
    user_id as account_id,
    lower(trim(email)) as email,
    full_name,
    company,
    coalesce(country, 'unknown') as country,
    industry,
    company_size,
    acquisition_channel,
    cast(signup_at as timestamp) as signed_up_at,
    cast(cast(signup_at as timestamp) as date) as signup_date
from {{ source('app', 'user_profiles') }}
