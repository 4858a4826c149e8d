{# Which implementation dispatch picks: dbt-duckdb takes duckdb__, and so does Strata. #}
{% macro label(x) %}{{ return(adapter.dispatch('label', 'shop_utils')(x)) }}{% endmacro %}
{% macro default__label(x) %}'default {{ x }}'{% endmacro %}
{% macro duckdb__label(x) %}'duckdb {{ x }}'{% endmacro %}
{% macro postgres__label(x) %}'postgres {{ x }}'{% endmacro %}
