{# A ratio rounded to `digits`, NULL instead of an error when the denominator is zero. #}
{% macro safe_ratio(numerator, denominator, digits=2) -%}
    case
        when ({{ denominator }}) = 0 then null
        else round(cast({{ numerator }} as double) / ({{ denominator }}), {{ digits }})
    end
{%- endmacro %}
