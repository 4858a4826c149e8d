{# A view dividing integers: its columns say what its rows hold (a double), as DuckDB's. #}
{{ config(materialized='view') }}
select store_id, store_id / 2 as half
from {{ ref('stores') }}
