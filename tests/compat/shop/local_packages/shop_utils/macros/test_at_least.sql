{% test at_least(model, column_name, minimum) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} < {{ minimum }}
{% endtest %}
