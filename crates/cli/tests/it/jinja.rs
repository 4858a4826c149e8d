//! The Jinja that real dbt projects use: dbt's cross-database macros, adapter and api.

use crate::project::TestProject;

const CROSS_DB: &str = r#"select
  {{ dbt.datediff("date '2024-01-15'", "date '2024-03-01'", 'day') }} as days,
  {{ dbt.datediff("date '2024-01-15'", "date '2024-03-01'", 'month') }} as months,
  {{ dbt.datediff("date '2023-12-31'", "date '2024-01-01'", 'year') }} as years,
  {{ dbt.datediff("timestamp '2024-01-01 10:59:00'", "timestamp '2024-01-01 12:01:00'", 'hour') }} as hours,
  {{ dbt.datediff("date '2024-01-01'", "date '2024-01-15'", 'week') }} as weeks,
  {{ dbt.dateadd('month', 1, "date '2024-01-31'") }} as next_month,
  {{ dbt.dateadd('day', '-2', "date '2024-03-01'") }} as two_days_before,
  {{ dbt.date_trunc('month', "date '2024-03-17'") }} as month_start,
  {{ dbt.safe_cast("'abc'", api.Relation.create(identifier='x').identifier | replace('x', dbt.type_int())) }} as bad_int,
  {{ dbt.concat(["'a'", "'b'"]) }} as ab,
  {{ dbt.hash("'x'") }} as h,
  {{ dbt.split_part("'a-b-c'", "'-'", 2) }} as part,
  {{ dbt.position("'ll'", "'hello'") }} as pos,
  {{ dbt.string_literal("it's") }} as lit,
  {{ adapter.quote('Mixed Case') }} is null as quoted,
  '{{ adapter.dispatch('type_string')() }}' as t,
  {{ dbt.last_day("date '2024-02-10'", 'month') }} as last_day
from (select null as "Mixed Case") as q
"#;

#[test]
fn cross_database_macros_compute_what_dbt_documents() {
    let p = TestProject::with_files(&[("models/xdb.sql", CROSS_DB)]);
    p.ok(&["run"]);
    let json = p.ok(&["show", "-s", "xdb", "-o", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(row["node"], "xdb");
    let row = &row["show"][0];
    assert_eq!(row["days"], 46);
    assert_eq!(row["months"], 2);
    assert_eq!(row["years"], 1);
    assert_eq!(row["hours"], 2);
    assert_eq!(row["weeks"], 2);
    // date + interval is a timestamp, as in PostgreSQL and DuckDB.
    assert_eq!(row["next_month"], "2024-02-29T00:00:00");
    assert_eq!(row["two_days_before"], "2024-02-28T00:00:00");
    assert_eq!(row["month_start"], "2024-03-01T00:00:00");
    // safe_cast of bad text is NULL (a column that exists and holds NULL).
    assert_eq!(
        p.query("select bad_int is null as is_null from xdb"),
        vec!["is_null", "true"]
    );
    assert_eq!(row["ab"], "ab");
    assert_eq!(row["h"], "9dd4e461268c8034f5c8564e155c67a6");
    assert_eq!(row["part"], "b");
    assert_eq!(row["pos"], 3);
    assert_eq!(row["lit"], "it's");
    assert_eq!(row["quoted"], true);
    assert_eq!(row["t"], "varchar");
    assert_eq!(row["last_day"], "2024-02-29");
}

#[test]
fn a_project_macro_overrides_a_cross_database_macro() {
    let p = TestProject::with_files(&[
        (
            "macros/hash.sql",
            "{% macro default__hash(field) %}sha256(cast({{ field }} as varchar)){% endmacro %}",
        ),
        ("models/h.sql", "select {{ dbt.hash(\"'x'\") }} as h"),
    ]);
    let sql = p.ok(&["compile", "-s", "h"]);
    assert!(sql.contains("sha256(cast('x' as varchar))"), "{sql}");
}

#[test]
fn unknown_dispatch_targets_are_named() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "select {{ adapter.dispatch('nope')() }} as x",
    )]);
    let out = p.fails(&["run"], 2);
    assert!(out.contains("adapter.dispatch('nope')"), "{out}");
}

const INTROSPECTION: &str = r#"{% set statuses = run_query("select distinct status from " ~ ref('stg_orders') ~ " order by 1") %}
{% call statement('n_orders', fetch_result=True) %}
select count(*) as n from {{ ref('stg_orders') }}
{% endcall %}
{% set n = load_result('n_orders')['data'][0][0] if execute else 0 %}
{% set cols = adapter.get_columns_in_relation(ref('stg_orders')) %}
{% set missing = adapter.get_relation(database=this.database, schema='nowhere', identifier='nothing') %}
select
{% if execute %}
  {% for s in statuses.columns[0].values() %}
  sum(case when status = '{{ s }}' then 1 else 0 end) as {{ s }}_orders,
  {% endfor %}
{% endif %}
  {{ n }} as total,
  '{{ cols | map(attribute="name") | join(",") }}' as columns,
  {{ 'true' if missing is none else 'false' }} as missing_is_none
from {{ ref('stg_orders') }}
"#;

#[test]
fn templates_can_query_the_warehouse() {
    let p = TestProject::with_files(&[
        (
            "models/stg_orders.sql",
            "{{ config(materialized='table') }}select * from (values (1, 'placed'), (2, 'shipped'), (3, 'placed')) as t(order_id, status)",
        ),
        ("models/intro.sql", INTROSPECTION),
    ]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select placed_orders, shipped_orders, total, columns, missing_is_none from intro"),
        vec![
            "placed_orders,shipped_orders,total,columns,missing_is_none",
            "2,1,3,\"order_id,status\",true"
        ]
    );
    // `compile` connects too, so the same queries render there.
    let sql = p.ok(&["compile", "-s", "intro"]);
    assert!(sql.contains("as shipped_orders"), "{sql}");
}

#[test]
fn dbt_macros_are_global_and_a_project_macro_of_the_same_name_wins() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "select cast(1.5 as {{ type_numeric() }}) as n, '{{ type_string() }}' as t",
    )]);
    p.ok(&["run"]);
    assert_eq!(p.query("select * from m"), vec!["n,t", "1.500000,varchar"]);
    p.write(
        "macros/types.sql",
        "{% macro type_string() %}text_of_mine{% endmacro %}",
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select t from m"), vec!["t", "text_of_mine"]);
}

#[test]
fn a_properties_entry_without_its_model_warns_and_its_tests_do_not_run() {
    let p = TestProject::with_files(&[
        ("models/kept.sql", "select 1 as id"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: kept\n    columns:\n      - name: id\n        tests: [not_null]\n  - name: removed\n    columns:\n      - name: id\n        tests: [not_null]\n",
        ),
    ]);
    let out = p.strata(&["build"]).output().expect("build");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "models/schema.yml: describes model `removed`, but there is no model file `removed.sql`"
        ),
        "{stderr}"
    );
    assert!(stdout.contains("PASS=2"), "{stdout}");
}

#[test]
fn set_and_load_relation_as_in_dbt() {
    let p = TestProject::with_files(&[
        (
            "models/base.sql",
            "{{ config(materialized='table') }}select 1 as id",
        ),
        (
            "models/probe.sql",
            "-- depends_on: {{ ref('base') }}\nselect '{{ set(['b', 'a', 'b']) | join(',') }}' as distinct_values, {{ 1 if load_relation(ref('base')) is not none else 0 }} as found, {{ 1 if load_relation(api.Relation.create(schema='main', identifier='nothing')) is none else 0 }} as missing",
        ),
    ]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select * from probe"),
        vec!["distinct_values,found,missing", "\"b,a\",1,1"]
    );
}

#[test]
fn graph_lists_the_projects_nodes_and_sources() {
    let p = TestProject::with_files(&[
        ("models/a.sql", "select 1 as x"),
        ("models/b.sql", "select 2 as x"),
        (
            "models/census.sql",
            "{% set names = [] %}{% if execute %}{% for n in graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') %}{% do names.append(n.name) %}{% endfor %}{% endif %}\nselect '{{ names | sort | join('-') }}' as models, {{ graph.sources | length }} as sources",
        ),
    ]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select models, sources from census"),
        vec!["models,sources", "a-b-census,0"]
    );
}
