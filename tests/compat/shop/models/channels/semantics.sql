{#- Jinja and SQL habits of real dbt projects, compared with dbt-duckdb: Python lists and dicts
    that change, date arithmetic, dispatch order, select-list aliases reused, dates and
    intervals, text beside dates, mod() and regexp_matches(). These are DuckDB's habits, so
    the model is not built on PostgreSQL. -#}
{{ config(enabled=target.type != 'postgres') }}
{%- set seen = {} -%}
{%- for c in ['web', 'shop', 'web'] -%}
  {%- do seen.update({c: seen.get(c, []) + [loop.index]}) -%}
{%- endfor -%}
{%- set parts = [] -%}
{%- do parts.extend(seen.keys() | list) -%}
{%- do parts.insert(0, 'all') -%}
{%- set day_before = modules.datetime.date(2024, 3, 1) - modules.datetime.timedelta(days=1) -%}
select
    '{{ parts | join("-") }}' as channels,
    {{ seen['web'] | length }} as web_seen,
    '{{ day_before.isoformat() }}' as day_before,
    {{ shop_utils.label('x') }} as picked,
    cast('2024-01-31' as date) + interval '90 minutes' as shifted,
    coalesce(cast(null as date), '2099-12-31') as open_until,
    mod(17, 5) as remainder,
    regexp_matches('Porto', 'PORT', 'i') as matched,
    2 as points,
    10 * points as revenue
