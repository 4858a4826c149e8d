{% macro with_tax(amount) -%}
    {{ round_to(amount ~ ' * (1 + ' ~ var('tax_rate') ~ ')', 2) }}
{%- endmacro %}

{#- round(x, digits) for doubles too: PostgreSQL rounds numerics only. -#}
{% macro round_to(expression, digits) -%}
    {{ return(adapter.dispatch('round_to')(expression, digits)) }}
{%- endmacro %}

{% macro default__round_to(expression, digits) -%}
    round({{ expression }}, {{ digits }})
{%- endmacro %}

{% macro postgres__round_to(expression, digits) -%}
    round(cast({{ expression }} as numeric), {{ digits }})
{%- endmacro %}
