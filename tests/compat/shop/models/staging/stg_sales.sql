with source as (
    select * from {{ ref('sales') }}
),

renamed as (
    select
        sale_id,
        store_id,
        product_id,
        cast(sold_at as timestamp) as sold_at,
        cast(cast(sold_at as timestamp) as date) as sold_on,
        quantity,
        lower(channel) as channel
    from source
)

select * from renamed
