//! Unit tests (`unit_tests:`, as in dbt 1.8): a model run on given rows against expected rows.

use crate::project::TestProject;

const PAYMENTS: &str = "payment_id,amount,kind\n1,10,charge\n2,4,refund\n";

const FCT: &str = "{{ config(materialized='table') }}
select
  payment_id,
  case when kind = 'refund' then -amount else amount end * {{ var('rate', 1) }} as signed_amount
from {{ ref('stg_payments') }}
{% if is_incremental() %} where payment_id > {{ env_var('PAYMENT_FLOOR', '0') }} {% endif %}";

fn project(unit_tests: &str) -> TestProject {
    TestProject::with_files(&[
        ("seeds/raw_payments.csv", PAYMENTS),
        (
            "models/stg_payments.sql",
            "select payment_id, amount, kind from {{ ref('raw_payments') }}",
        ),
        ("models/fct_payments.sql", FCT),
        ("models/unit.yml", unit_tests),
    ])
}

#[test]
fn a_model_runs_on_given_rows_and_matches_the_expected_ones() {
    let p = project(
        "unit_tests:
  - name: refunds_are_negative
    model: fct_payments
    given:
      - input: ref('stg_payments')
        rows:
          - {payment_id: 7, amount: 5, kind: refund}
          - {payment_id: 8, amount: 3, kind: charge}
    expect:
      rows:
        - {payment_id: 8, signed_amount: 3}
        - {payment_id: 7, signed_amount: -5}
  - name: csv_rows_and_overrides
    model: fct_payments
    overrides:
      vars: {rate: 2}
      macros: {is_incremental: true}
      env_vars: {PAYMENT_FLOOR: '100'}
    given:
      - input: ref('stg_payments')
        format: csv
        rows: |
          payment_id,amount,kind
          101,5,charge
          3,9,charge
    expect:
      format: sql
      rows: select 101 as payment_id, 10 as signed_amount
",
    );
    let out = p.ok(&["build"]);
    assert!(out.contains("PASS refunds_are_negative"), "{out}");
    assert!(out.contains("PASS csv_rows_and_overrides"), "{out}");
    // The real table was built from the real rows, not the given ones.
    assert_eq!(
        p.query("select signed_amount from fct_payments order by payment_id"),
        vec!["signed_amount", "10", "-4"]
    );
    // Selected as unit tests, by their own name, and listed in the manifest.
    let out = p.ok(&["test", "--select", "test_type:unit"]);
    assert!(out.contains("PASS refunds_are_negative"), "{out}");
    assert!(!out.contains("stg_payments"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let unit = &manifest["unit_tests"]["unit_test.t.fct_payments.refunds_are_negative"];
    assert_eq!(unit["model"], "fct_payments");
    assert_eq!(unit["given"][0]["input"], "ref('stg_payments')");
}

#[test]
fn a_failing_unit_test_shows_the_rows_that_differ_and_its_model_is_skipped() {
    let p = project(
        "unit_tests:
  - name: wrong_sign
    model: fct_payments
    given:
      - input: ref('stg_payments')
        rows: [{payment_id: 1, amount: 5, kind: refund}]
    expect:
      rows: [{payment_id: 1, signed_amount: 5}]
",
    );
    let out = p.fails(&["build"], 1);
    assert!(out.contains("FAIL"), "{out}");
    assert!(
        out.contains("actual differs from expected in 2 rows"),
        "{out}"
    );
    assert!(out.contains("- 1 | 5"), "{out}");
    assert!(out.contains("+ 1 | -5"), "{out}");
    // As in dbt, the model is not built when its unit test fails; its inputs are.
    assert!(out.contains("SKIP"), "{out}");
    assert!(p.ok(&["ls"]).contains("fct_payments"));
    assert_eq!(
        p.query("select count(*) as n from stg_payments"),
        vec!["n", "2"]
    );
    // `run` builds models only, so it builds it.
    p.ok(&["run"]);
    assert_eq!(
        p.query("select count(*) as n from fct_payments"),
        vec!["n", "2"]
    );
}

#[test]
fn a_unit_test_of_a_missing_model_or_bad_input_is_named() {
    let p = project(
        "unit_tests:
  - name: bad
    model: fct_payments
    given:
      - input: stg_payments
        rows: []
    expect: {rows: []}
",
    );
    let err = p.fails(&["build"], 2);
    assert!(
        err.contains("input `stg_payments` is not ref('model') or source('source', 'table')"),
        "{err}"
    );
}
