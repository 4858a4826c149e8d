select id, cast(happened_at as varchar) as happened_text
from {{ ref('events') }}
