{# A ratio rounded to `digits`, NULL instead of an error when the denominator is zero.
   PostgreSQL rounds numerics only, so it has its own implementation. #}
{% macro safe_ratio(numerator, denominator, digits=2) -%}
    {{ return(adapter.dispatch('safe_ratio', 'shop_utils')(numerator, denominator, digits)) }}
{%- endmacro %}

{% macro default__safe_ratio(numerator, denominator, digits) -%}
    case
        when ({{ denominator }}) = 0 then null
        else round(cast({{ numerator }} as double) / ({{ denominator }}), {{ digits }})
    end
{%- endmacro %}

{% macro postgres__safe_ratio(numerator, denominator, digits) -%}
    case
        when ({{ denominator }}) = 0 then null
        else round(cast({{ numerator }} as numeric) / ({{ denominator }}), {{ digits }})
    end
{%- endmacro %}
