{% test at_least_rows(model, at_least) %}
select count(*) as n from {{ model }} having count(*) < {{ at_least }}
{% endtest %}
