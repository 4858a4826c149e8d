select id, 0.5 as half_literal, amount * 1.5 as scaled
from {{ ref('events') }}
