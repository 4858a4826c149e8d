{% macro cents_to_dollars(column, scale=2) -%}
    round(cast({{ column }} as double) / 100, {{ scale }})
{%- endmacro %}
