{{ config(materialized='view') }}
select id, id / 2 as half
from {{ ref('events') }}
