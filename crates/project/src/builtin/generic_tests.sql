{#- Strata's built-in generic data tests. A test passes when its query returns no rows.
    A project's own test of the same name replaces the built-in one. -#}

{% test not_null(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is null
{% endtest %}

{% test unique(model, column_name) %}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{% endtest %}

{% test accepted_values(model, column_name, values, quote=True) %}
with all_values as (
    select {{ column_name }} as value_field, count(*) as n_records
    from {{ model }}
    group by {{ column_name }}
)
select value_field, n_records
from all_values
where value_field not in (
    {%- for v in values -%}
    {%- if quote -%}'{{ v | string | replace("'", "''") }}'{%- else -%}{{ v }}{%- endif -%}
    {%- if not loop.last %}, {% endif -%}
    {%- endfor -%}
)
{% endtest %}

{% test relationships(model, column_name, to, field) %}
with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),
parent as (
    select {{ field }} as to_field
    from {{ to }}
)
select child.from_field
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null
{% endtest %}

{#- Anomaly tests, with Elementary's names and arguments. Strata measures and judges them
    itself against the metrics it keeps per run; the query here is the data measured. -#}

{% test volume_anomalies(model) %}
{%- set _arguments = kwargs -%}
select * from {{ model }}
{% endtest %}

{% test freshness_anomalies(model) %}
{%- set _arguments = kwargs -%}
select * from {{ model }}
{% endtest %}

{% test column_anomalies(model, column_name) %}
{%- set _arguments = kwargs -%}
select * from {{ model }}
{% endtest %}
