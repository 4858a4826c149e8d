{#- Strata's implementations of dbt's cross-database macros, called as `dbt.<name>(...)` or
    through `adapter.dispatch('<name>')`. A project's own `default__<name>` or
    `strata__<name>` macro replaces the one here. -#}

{% macro default__type_string() %}varchar{% endmacro %}
{% macro default__type_int() %}integer{% endmacro %}
{% macro default__type_bigint() %}bigint{% endmacro %}
{% macro default__type_float() %}double{% endmacro %}
{% macro default__type_numeric() %}decimal(28, 6){% endmacro %}
{% macro default__type_timestamp() %}timestamp{% endmacro %}
{% macro default__type_boolean() %}boolean{% endmacro %}

{% macro default__current_timestamp() %}now(){% endmacro %}

{% macro default__cast(field, type) %}cast({{ field }} as {{ type }}){% endmacro %}

{% macro default__safe_cast(field, type) %}try_cast({{ field }} as {{ type }}){% endmacro %}

{% macro default__concat(fields) %}{{ fields | join(' || ') }}{% endmacro %}

{% macro default__hash(field) %}md5(cast({{ field }} as varchar)){% endmacro %}

{% macro default__string_literal(value) %}'{{ value | replace("'", "''") }}'{% endmacro %}

{% macro default__escape_single_quotes(expression) %}{{ expression | replace("'", "''") }}{% endmacro %}

{% macro default__split_part(string_text, delimiter_text, part_number) %}split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }}){% endmacro %}

{% macro default__position(substring_text, string_text) %}strpos({{ string_text }}, {{ substring_text }}){% endmacro %}

{% macro default__replace(field, old_chars, new_chars) %}replace({{ field }}, {{ old_chars }}, {{ new_chars }}){% endmacro %}

{% macro default__right(string_text, length_expression) %}right({{ string_text }}, {{ length_expression }}){% endmacro %}

{% macro default__length(expression) %}length({{ expression }}){% endmacro %}

{% macro default__bool_or(expression) %}bool_or({{ expression }}){% endmacro %}

{% macro default__any_value(expression) %}min({{ expression }}){% endmacro %}

{% macro default__listagg(measure, delimiter_text="','", order_by_clause=none, limit_num=none) -%}
string_agg({{ measure }}, {{ delimiter_text }}{% if order_by_clause %} {{ order_by_clause }}{% endif %})
{%- endmacro %}

{% macro default__except() %}except{% endmacro %}
{% macro default__intersect() %}intersect{% endmacro %}

{% macro default__cast_bool_to_text(field) %}cast({{ field }} as varchar){% endmacro %}

{% macro default__date_trunc(datepart, date) %}date_trunc('{{ datepart }}', {{ date }}){% endmacro %}

{% macro default__dateadd(datepart, interval, from_date_or_timestamp) -%}
({{ from_date_or_timestamp }} + cast(cast({{ interval }} as varchar) || ' {{ datepart }}' as interval))
{%- endmacro %}

{% macro default__datediff(first_date, second_date, datepart) -%}
{%- set part = datepart | lower -%}
{%- if part == 'day' -%}
(cast({{ second_date }} as date) - cast({{ first_date }} as date))
{%- elif part == 'week' -%}
cast((cast(date_trunc('week', cast({{ second_date }} as timestamp)) as date) - cast(date_trunc('week', cast({{ first_date }} as timestamp)) as date)) / 7 as bigint)
{%- elif part == 'month' -%}
cast(((date_part('year', {{ second_date }}) - date_part('year', {{ first_date }})) * 12 + date_part('month', {{ second_date }}) - date_part('month', {{ first_date }})) as bigint)
{%- elif part == 'quarter' -%}
cast(((date_part('year', {{ second_date }}) - date_part('year', {{ first_date }})) * 4 + date_part('quarter', {{ second_date }}) - date_part('quarter', {{ first_date }})) as bigint)
{%- elif part == 'year' -%}
cast((date_part('year', {{ second_date }}) - date_part('year', {{ first_date }})) as bigint)
{%- elif part in ['hour', 'minute', 'second'] -%}
{%- set seconds = {'hour': 3600, 'minute': 60, 'second': 1}[part] -%}
cast((date_part('epoch', date_trunc('{{ part }}', cast({{ second_date }} as timestamp))) - date_part('epoch', date_trunc('{{ part }}', cast({{ first_date }} as timestamp)))) / {{ seconds }} as bigint)
{%- else -%}
{{ exceptions.raise_compiler_error("datediff: unsupported datepart " ~ datepart ~ "; use year, quarter, month, week, day, hour, minute or second") }}
{%- endif -%}
{%- endmacro %}

{% macro default__last_day(date, datepart) -%}
cast(date_trunc('{{ datepart }}', {{ date }}) + interval '1 {{ datepart }}' - interval '1 day' as date)
{%- endmacro %}

{#- dbt's materialization helpers that packages call: whether the node stores its failing rows
    (its `store_failures` config), and whether it is rebuilt in full. -#}
{% macro should_store_failures() -%}
{{ return(config.get('store_failures') in [true, 'true', 'True']) }}
{%- endmacro %}

{% macro should_full_refresh() -%}
{{ return(flags.FULL_REFRESH or config.get('full_refresh') in [true, 'true', 'True']) }}
{%- endmacro %}

{#- PostgreSQL warehouses: where the portable SQL above is not PostgreSQL's. -#}
{% macro postgres__type_float() %}float8{% endmacro %}

{% macro postgres__safe_cast(field, type) %}cast({{ field }} as {{ type }}){% endmacro %}
