//! Data tests and `strata build`.

use crate::project::TestProject;

/// Orders with one duplicate id, one null id, an unknown status and an orphan customer.
fn shop() -> TestProject {
    TestProject::with_files(&[
        ("seeds/customers.csv", "id,name\n1,Ava\n2,Ben\n"),
        (
            "seeds/raw_orders.csv",
            "id,customer_id,status,amount\n1,1,placed,10\n2,1,shipped,20\n2,2,shipped,5\n,2,placed,7\n5,9,lost,3\n",
        ),
        (
            "models/orders.sql",
            "{{ config(materialized='table') }}select * from {{ ref('raw_orders') }}",
        ),
        (
            "models/order_totals.sql",
            "select customer_id, sum(amount) as total from {{ ref('orders') }} group by customer_id",
        ),
        (
            "macros/tests.sql",
            "{% test at_least(model, column_name, min) %}select * from {{ model }} where {{ column_name }} < {{ min }}{% endtest %}",
        ),
        (
            "tests/no_big_orders.sql",
            "select * from {{ ref('orders') }} where amount > 100",
        ),
    ])
}

fn schema(p: &TestProject, yaml: &str) {
    p.write("models/schema.yml", yaml);
}

#[test]
fn generic_and_singular_tests_report_pass_fail_and_warn() {
    let p = shop();
    schema(
        &p,
        "version: 2
models:
  - name: orders
    columns:
      - name: id
        tests: [unique, not_null]
      - name: status
        data_tests:
          - accepted_values:
              arguments: {values: [placed, shipped]}
              config: {severity: warn}
      - name: customer_id
        tests:
          - relationships: {to: ref('customers'), field: id}
      - name: amount
        tests:
          - at_least: {min: 1}
",
    );
    p.ok(&["seed"]);
    p.ok(&["run"]);
    let out = p.fails(&["test"], 1);
    assert!(out.contains("FAIL 1 unique_orders_id"), "{out}");
    assert!(out.contains("FAIL 1 not_null_orders_id"), "{out}");
    assert!(
        out.contains("WARN 1 accepted_values_orders_status__placed__shipped"),
        "{out}"
    );
    assert!(
        out.contains("FAIL 1 relationships_orders_customer_id__id__ref_customers_"),
        "{out}"
    );
    assert!(out.contains("PASS at_least_orders_amount__1"), "{out}");
    assert!(out.contains("PASS no_big_orders"), "{out}");
    assert!(
        out.contains("PASS=2 WARN=1 ERROR=3 SKIP=0 TOTAL=6"),
        "{out}"
    );
    assert!(
        out.contains("Got 1 result, configured to fail if != 0"),
        "{out}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).expect("json");
    let unique = results["results"]
        .as_array()
        .and_then(|r| {
            r.iter().find(|x| {
                x["unique_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("test.t.unique_orders_id."))
            })
        })
        .expect("unique result");
    assert_eq!(unique["status"], "fail");
    assert_eq!(unique["failures"], 1);
}

#[test]
fn where_limit_and_thresholds() {
    let p = shop();
    schema(
        &p,
        "version: 2
models:
  - name: orders
    columns:
      - name: id
        tests:
          - not_null:
              config: {where: \"status = 'shipped'\"}
          - unique:
              where: \"customer_id = 1\"
      - name: amount
        tests:
          - at_least:
              min: 100
              error_if: \">= 10\"
              warn_if: \">= 3\"
          - at_least:
              name: amount_small_limited
              min: 100
              limit: 2
              severity: warn
",
    );
    p.ok(&["seed"]);
    p.ok(&["run"]);
    // Warnings do not fail the command.
    let out = p.ok(&["test"]);
    assert!(out.contains("PASS not_null_orders_id"), "{out}");
    // customer 1 has ids 1 and 2 once each; the duplicate id 2 belongs to customer 2.
    assert!(out.contains("PASS unique_orders_id"), "{out}");
    assert!(out.contains("WARN 5 at_least_orders_amount__100"), "{out}");
    assert!(out.contains("WARN 2 amount_small_limited"), "{out}");
    // A stricter error threshold turns the warning into a failure.
    p.write(
        "models/schema.yml",
        &p.read("models/schema.yml")
            .replace("error_if: \">= 10\"", "error_if: \">= 5\""),
    );
    let out = p.fails(&["test"], 1);
    assert!(out.contains("FAIL 5 at_least_orders_amount__100"), "{out}");
}

#[test]
fn build_runs_seeds_models_and_tests_and_skips_below_a_failing_test() {
    let p = shop();
    schema(
        &p,
        "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n        tests: [unique, not_null]\n",
    );
    let out = p.fails(&["build"], 1);
    assert!(out.contains("OK loaded seed file main.raw_orders"), "{out}");
    assert!(
        out.contains("OK created sql table model main.orders"),
        "{out}"
    );
    assert!(out.contains("FAIL 1 unique_orders_id"), "{out}");
    // order_totals reads orders, whose tests failed: it is skipped, the tests still ran.
    assert!(out.contains("SKIP relation main.order_totals"), "{out}");
    assert!(out.contains("FAIL 1 not_null_orders_id"), "{out}");
    assert!(out.contains("PASS no_big_orders"), "{out}");
    // With clean data everything builds.
    p.write(
        "seeds/raw_orders.csv",
        "id,customer_id,status,amount\n1,1,placed,10\n2,2,shipped,20\n",
    );
    let out = p.ok(&["build"]);
    assert!(
        out.contains("PASS=7 WARN=0 ERROR=0 SKIP=0 TOTAL=7"),
        "{out}"
    );
    assert_eq!(
        p.query("select count(*) as n from order_totals"),
        vec!["n", "2"]
    );
}

#[test]
fn tests_follow_the_selection_of_their_models() {
    let p = shop();
    schema(
        &p,
        "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n        tests: [not_null]\n",
    );
    p.ok(&["build", "-s", "raw_orders", "customers"]);
    p.ok(&["run"]);
    let out = p.fails(&["test", "-s", "orders"], 1);
    assert!(out.contains("TOTAL=2"), "{out}");
    let out = p.ok(&[
        "test",
        "-s",
        "orders",
        "--exclude",
        "no_big_orders",
        "not_null_orders_id",
    ]);
    assert!(out.contains("Nothing to do"), "{out}");
    assert_eq!(
        p.ok(&["ls", "-s", "resource_type:test", "-o", "name"]),
        "no_big_orders\nnot_null_orders_id\n"
    );
}

#[test]
fn a_test_on_a_missing_column_or_an_unknown_test_is_explained() {
    let p = shop();
    schema(
        &p,
        "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: idd\n        tests: [not_null]\n",
    );
    p.ok(&["seed"]);
    p.ok(&["run"]);
    let out = p.fails(&["test"], 1);
    assert!(
        out.contains("Failure in test not_null_orders_idd (models/schema.yml)"),
        "{out}"
    );
    assert!(out.contains("idd"), "{out}");
    schema(
        &p,
        "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n        tests: [is_positive]\n",
    );
    let out = p.fails(&["test"], 2);
    assert!(out.contains("test `is_positive_orders_id`"), "{out}");
    assert!(out.contains("test_is_positive"), "{out}");
    assert!(out.contains("{% test name(model, column_name) %}"), "{out}");
}

#[test]
fn contracts_are_checked_before_anything_is_written() {
    let p = TestProject::with_files(&[
        (
            "models/c.sql",
            "{{ config(materialized='table') }}select 1 as id, 'a' as name, 2.5 as price",
        ),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: c\n    config:\n      contract: {enforced: true}\n    columns:\n      - {name: price, data_type: double}\n      - {name: id, data_type: bigint}\n      - {name: name, data_type: varchar}\n",
        ),
    ]);
    p.ok(&["run"]);
    // The table takes the contract's column order.
    assert_eq!(p.query("select * from c"), vec!["price,id,name", "2.5,1,a"]);
    // A type that differs, a missing column and an extra one: the run fails with a diff.
    p.write(
        "models/c.sql",
        "{{ config(materialized='table') }}select 'x' as id, 2.5 as price, true as extra",
    );
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("does not match its contract; nothing was written"),
        "{out}"
    );
    assert!(out.contains("type differs"), "{out}");
    assert!(out.contains("missing from the query"), "{out}");
    assert!(out.contains("not in the contract"), "{out}");
    // The previous table is untouched.
    assert_eq!(p.query("select * from c"), vec!["price,id,name", "2.5,1,a"]);
    // A contract needs types.
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: c\n    config:\n      contract: {enforced: true}\n    columns:\n      - {name: id}\n",
    );
    let out = p.fails(&["run"], 1);
    assert!(out.contains("these columns have no data_type: id"), "{out}");
}

#[test]
fn store_failures_keeps_the_history_of_failing_rows() {
    let p = shop();
    schema(
        &p,
        "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: customer_id\n        tests:\n          - relationships:\n              to: ref('customers')\n              field: id\n              config: {store_failures: true}\n      - name: id\n        tests: [{not_null: {config: {store_failures: true, severity: warn}}}]\n",
    );
    p.ok(&["seed"]);
    p.ok(&["run"]);
    p.fails(&["test"], 1);
    let audit = "main_dbt_test__audit";
    assert_eq!(
        p.query(&format!(
            "select from_field from {audit}.relationships_orders_customer_id__id__ref_customers_"
        )),
        vec!["from_field", "9"]
    );
    assert_eq!(
        p.query(&format!(
            "select count(*) as n from {audit}.not_null_orders_id"
        )),
        vec!["n", "1"]
    );
    // A second run adds to the history instead of replacing it.
    p.fails(&["test"], 1);
    assert_eq!(
        p.query(&format!(
            "select count(*) as n, count(distinct strata_run_id) as runs from {audit}.relationships_orders_customer_id__id__ref_customers_"
        )),
        vec!["n,runs", "2,2"]
    );
}

#[test]
fn source_tests_root_generic_tests_and_tags() {
    let p = TestProject::with_files(&[
        ("data/people.csv", "id,age\n1,30\n2,-4\n"),
        (
            "tests/generic/non_negative.sql",
            "{% test non_negative(model, column_name) %}select * from {{ model }} where {{ column_name }} < 0{% endtest %}",
        ),
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: raw\n    meta: {external_location: 'data/{name}.csv'}\n    tables:\n      - name: people\n        columns:\n          - name: id\n            tests: [unique, not_null]\n          - name: age\n            tests:\n              - non_negative:\n                  config: {tags: [quality]}\n",
        ),
    ]);
    let out = p.fails(&["test"], 1);
    assert!(out.contains("PASS source_unique_raw_people_id"), "{out}");
    assert!(out.contains("PASS source_not_null_raw_people_id"), "{out}");
    assert!(
        out.contains("FAIL 1 source_non_negative_raw_people_age"),
        "{out}"
    );
    let out = p.fails(&["test", "-s", "tag:quality"], 1);
    assert!(out.contains("TOTAL=1"), "{out}");
    let out = p.ok(&[
        "test",
        "-s",
        "source:raw.people",
        "--exclude",
        "tag:quality",
    ]);
    assert!(out.contains("PASS=2"), "{out}");
}

#[test]
fn an_unknown_macro_in_a_model_is_named() {
    let p = TestProject::with_files(&[
        (
            "macros/m.sql",
            "{% macro cents(x) %}{{ x }} / 100{% endmacro %}",
        ),
        ("models/a.sql", "select {{ centz('amount') }} as x"),
    ]);
    let out = p.fails(&["run"], 2);
    assert!(out.contains("models/a.sql"), "{out}");
    assert!(
        out.contains(
            "no macro or function is named `centz` — did you mean `cents`? (macros live in macros)"
        ),
        "{out}"
    );
}

#[test]
fn warn_error_makes_a_warning_test_fail() {
    let p = TestProject::with_files(&[
        ("models/m.sql", "select 1 as id union all select 1 as id"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        data_tests:\n          - unique: {config: {severity: warn}}\n",
        ),
    ]);
    let out = p.ok(&["build"]);
    assert!(out.contains("WARN 1 unique_m_id"), "{out}");
    let out = p.fails(&["build", "--warn-error"], 1);
    assert!(out.contains("FAIL 1 unique_m_id"), "{out}");
    assert!(out.contains("configured to fail if != 0"), "{out}");
}

#[test]
fn build_takes_resource_types() {
    let p = TestProject::with_files(&[
        ("seeds/raw.csv", "id\n1\n"),
        ("models/m.sql", "select id from {{ ref('raw') }}"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        data_tests: [not_null]\n",
        ),
    ]);
    let out = p.ok(&["build", "--resource-type", "seed"]);
    assert!(
        out.contains("Running 1 node") && out.contains("loaded seed"),
        "{out}"
    );
    let out = p.ok(&["build", "--exclude-resource-type", "test"]);
    assert!(out.contains("PASS=2") && !out.contains("not_null"), "{out}");
}

#[test]
fn the_store_failures_flag_stores_every_tests_failures() {
    let p = TestProject::with_files(&[
        ("models/m.sql", "select 1 as id union all select 1 as id"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        data_tests: [unique]\n",
        ),
    ]);
    p.fails(&["build"], 1);
    p.fails(&["build", "--store-failures"], 1);
    assert_eq!(
        p.query("select unique_field, n_records from main_dbt_test__audit.unique_m_id"),
        vec!["unique_field,n_records", "1,2"]
    );
}
