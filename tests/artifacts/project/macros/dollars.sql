{% macro dollars(cents) -%}
    ({{ cents }} / 100.0)
{%- endmacro %}
