//! The everyday walk: init, run, query, compile, list, clean.

use crate::project::TestProject;

#[test]
fn starter_project_builds_and_answers_queries() {
    let p = TestProject::starter();
    let out = p.ok(&["run"]);
    assert!(out.contains("1 of 5"), "{out}");
    assert!(
        out.contains("OK created sql table model gold.customers"),
        "{out}"
    );
    assert!(
        out.contains("PASS=5 WARN=0 ERROR=0 SKIP=0 TOTAL=5"),
        "{out}"
    );

    // Tables and views resolve from a new process, by ref and by name.
    assert_eq!(
        p.query("select count(*) as n from {{ ref('customers') }}"),
        vec!["n", "20"]
    );
    assert_eq!(
        p.query("select count(*) as n from silver.stg_orders"),
        vec!["n", "60"]
    );
    assert_eq!(
        p.query("select count(*) as n from gold.orders"),
        vec!["n", "60"]
    );
    // Payments split across methods add up to the total.
    assert_eq!(
        p.query(
            "select count(*) as n from gold.orders \
             where abs(credit_card_amount + bank_transfer_amount + gift_card_amount + coupon_amount - amount) > 0.001"
        ),
        vec!["n", "0"]
    );
    // The mart agrees with the raw files.
    let raw = p.query("select round(sum(amount) / 100, 2) as total from bronze.payments");
    let mart = p.query("select round(sum(amount), 2) as total from gold.orders");
    assert_eq!(raw, mart);

    // A second run replaces every table in place.
    let again = p.ok(&["run"]);
    assert!(again.contains("PASS=5"), "{again}");
    assert_eq!(
        p.query("select count(*) as n from gold.customers"),
        vec!["n", "20"]
    );

    // The starter's snapshot keeps each customer's email history.
    let out = p.ok(&["snapshot"]);
    assert!(
        out.contains("OK snapshotted silver.customers_history"),
        "{out}"
    );
    let csv = p.read("data/customers.csv");
    p.write(
        "data/customers.csv",
        &csv.replace("ava.hansen@example.com", "ava@example.org"),
    );
    let out = p.ok(&["build"]);
    assert!(out.contains("[INSERT 1, UPDATE 1"), "{out}");
    assert_eq!(
        p.query(
            "select email, dbt_valid_to is null as current from silver.customers_history where customer_id = 1 order by dbt_valid_from"
        ),
        vec!["email,current", "ava.hansen@example.com,false", "ava@example.org,true"]
    );
}

#[test]
fn artifacts_follow_dbt_schemas() {
    let p = TestProject::starter();
    p.ok(&["run"]);
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    assert_eq!(
        manifest["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/manifest/v12.json"
    );
    let orders = &manifest["nodes"]["model.shop.orders"];
    assert_eq!(orders["schema"], "gold");
    assert_eq!(orders["config"]["materialized"], "table");
    assert_eq!(
        orders["description"],
        "One row per order, with the amount paid through each payment method.\nPayments arrive in cents in the raw files and are converted to dollars in staging."
    );
    assert_eq!(
        manifest["parent_map"]["model.shop.customers"],
        serde_json::json!(["model.shop.orders", "model.shop.stg_customers"])
    );
    assert!(manifest["sources"]["source.shop.raw.orders"].is_object());

    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).expect("run results");
    assert_eq!(
        results["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/run-results/v6.json"
    );
    let entries = results["results"].as_array().expect("results");
    assert_eq!(entries.len(), 5);
    let customers = entries
        .iter()
        .find(|r| r["unique_id"] == "model.shop.customers")
        .expect("customers result");
    assert_eq!(customers["status"], "success");
    assert_eq!(customers["adapter_response"]["rows_affected"], 20);
    assert!(
        p.read("target/compiled/shop/models/marts/orders.sql")
            .contains("coupon_amount")
    );
}

#[test]
fn compile_renders_jinja_without_running() {
    let p = TestProject::starter();
    let sql = p.ok(&["compile", "--select", "stg_payments"]);
    assert!(
        sql.contains("round(cast(amount as double) / 100, 2) as amount"),
        "{sql}"
    );
    assert!(
        sql.contains(r#"from "strata"."bronze"."payments""#),
        "{sql}"
    );
    let all = p.ok(&["compile"]);
    assert!(all.contains("Compiled 6 nodes"), "{all}");
    assert!(
        p.read("target/compiled/shop/models/marts/customers.sql")
            .contains("'completed', 'shipped'")
    );
    // Nothing was built.
    assert!(!p.path().join(".strata/dev/gold").exists());
}

#[test]
fn ls_lists_nodes_in_each_output() {
    let p = TestProject::starter();
    let out = p.ok(&["ls"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "shop.marts.customers",
            "shop.marts.orders",
            "shop.staging.stg_customers",
            "shop.staging.stg_orders",
            "shop.staging.stg_payments",
            "shop.customers_history",
            "source:shop.raw.customers",
            "source:shop.raw.orders",
            "source:shop.raw.payments",
        ]
    );
    assert_eq!(
        p.ok(&[
            "ls",
            "--resource-type",
            "model",
            "-o",
            "name",
            "-s",
            "marts"
        ]),
        "customers\norders\n"
    );
    let json = p.ok(&["ls", "-s", "orders", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json line");
    assert_eq!(v["config"]["materialized"], "table");
}

#[test]
fn show_prints_tables_csv_and_json() {
    let p = TestProject::starter();
    let table = p.ok(&["show", "--select", "stg_customers", "--limit", "2"]);
    assert!(table.contains("| customer_id | first_name |"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        3,
        "{table}"
    );
    let csv = p.ok(&[
        "show",
        "--inline",
        "select 1 as a, 'x' as b",
        "--output",
        "csv",
    ]);
    assert_eq!(csv, "a,b\n1,x\n");
    let json = p.ok(&[
        "show",
        "--inline",
        "select 7 / 2 as half",
        "--output",
        "json",
    ]);
    assert_eq!(
        json.trim(),
        r#"{"node":"inline_query","columns":[{"name":"half","type":"DOUBLE"}],"show":[{"half":3.5}]}"#
    );
}

#[test]
fn targets_keep_separate_lakes() {
    let p = TestProject::starter();
    p.ok(&["run", "--target", "prod", "--select", "stg_orders"]);
    assert!(p.path().join(".strata/prod/metadata.sqlite").exists());
    assert!(
        !p.path().join(".strata/dev").exists(),
        "dev was touched by a prod run"
    );
    p.ok(&["run", "--select", "stg_customers"]);
    // dev does not see prod's view.
    let out = p.fails(&["show", "--inline", "select * from silver.stg_orders"], 2);
    assert!(out.contains("stg_orders"), "{out}");
}

#[test]
fn clean_removes_artifacts_but_not_the_warehouse() {
    let p = TestProject::starter();
    p.ok(&["run", "-s", "stg_orders"]);
    assert!(p.path().join("target/manifest.json").exists());
    p.ok(&["clean"]);
    assert!(!p.path().join("target").exists());
    assert_eq!(
        p.query("select count(*) as n from silver.stg_orders"),
        vec!["n", "60"]
    );
}

#[test]
fn debug_checks_the_setup() {
    let p = TestProject::starter();
    let out = p.ok(&["debug"]);
    assert!(out.contains("All checks passed!"), "{out}");
    assert!(out.contains("target:        dev"), "{out}");
}

#[test]
fn init_refuses_a_non_empty_folder() {
    let p = TestProject::starter();
    let out = p.fails(&["init", "."], 2);
    assert!(out.contains("not empty"), "{out}");
}

#[test]
fn help_explains_every_command() {
    let p = TestProject::empty();
    let help = p.ok(&["--help"]);
    for cmd in [
        "init", "demo", "debug", "compile", "run", "ls", "show", "clean",
    ] {
        assert!(
            help.contains(&format!("  {cmd}")),
            "--help misses {cmd}:\n{help}"
        );
    }
    let run = p.ok(&["run", "--help"]);
    assert!(
        run.contains("--select") && run.contains("--fail-fast") && run.contains("--threads"),
        "{run}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let p = TestProject::starter();
    let out = p.ok(&["--log-format", "json", "run", "-s", "+orders"]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let nodes: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "node_finished")
        .collect();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["status"] == "success"));
    assert_eq!(events.last().expect("summary")["event"], "run_finished");
}

#[test]
fn docs_generate_writes_manifest_and_catalog() {
    let p = TestProject::starter();
    p.ok(&["run", "-s", "+orders"]);
    let out = p.ok(&["docs", "generate"]);
    assert!(out.contains("catalog.json"), "{out}");
    let catalog: serde_json::Value =
        serde_json::from_str(&p.read("target/catalog.json")).expect("catalog");
    assert_eq!(
        catalog["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/catalog/v1.json"
    );
    let orders = &catalog["nodes"]["model.shop.orders"];
    assert_eq!(orders["metadata"]["type"], "BASE TABLE");
    assert_eq!(orders["columns"]["order_id"]["type"], "BIGINT");
    assert_eq!(orders["columns"]["order_date"]["type"], "DATE");
    assert_eq!(orders["columns"]["amount"]["index"], 9);
    assert_eq!(
        catalog["nodes"]["model.shop.stg_orders"]["metadata"]["type"],
        "VIEW"
    );
    // customers was not built, so it is not in the catalog; sources are.
    assert!(catalog["nodes"]["model.shop.customers"].is_null());
    assert_eq!(
        catalog["sources"]["source.shop.raw.payments"]["columns"]["amount"]["type"],
        "BIGINT"
    );
}

#[test]
fn show_of_no_rows_still_prints_the_columns() {
    let p = TestProject::with_files(&[("models/m.sql", "select 1 as a")]);
    let sql = "select 1 as a, 'x' as b where false";
    let table = p.ok(&["show", "--inline", sql]);
    assert!(table.contains("| a | b |"), "{table}");
    let csv = p.ok(&["show", "--inline", sql, "-o", "csv"]);
    assert_eq!(csv.trim(), "a,b");
    let json = p.ok(&["show", "--inline", sql, "-o", "json"]);
    assert_eq!(
        json.trim(),
        r#"{"node":"inline_query","columns":[{"name":"a","type":"BIGINT"},{"name":"b","type":"VARCHAR"}],"show":[]}"#
    );
}

#[test]
fn compile_writes_tests_and_compiles_inline_sql() {
    let p = TestProject::with_files(&[
        ("models/orders.sql", "select 1 as id"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n        data_tests: [unique]\n",
        ),
        (
            "tests/no_orders.sql",
            "select * from {{ ref('orders') }} where id < 0",
        ),
    ]);
    let out = p.ok(&["parse"]);
    assert!(out.contains("Parsed"), "{out}");
    assert!(
        p.read("target/manifest.json")
            .contains("test.t.unique_orders_id.")
    );
    p.ok(&["compile"]);
    let generic = p.read("target/compiled/t/models/schema.yml/unique_orders_id.sql");
    assert!(generic.contains("\"orders\""), "{generic}");
    let singular = p.read("target/compiled/t/tests/no_orders.sql");
    assert!(singular.contains("where id < 0"), "{singular}");
    // One test by name prints its SQL.
    let out = p.ok(&["compile", "-s", "unique_orders_id"]);
    assert!(
        out.contains("count(*)") || out.contains("group by"),
        "{out}"
    );
    // show runs a test by name: its failing rows.
    p.ok(&["run"]);
    let out = p.ok(&["show", "-s", "unique_orders_id"]);
    assert!(
        out.contains("unique_field") || out.contains("n_records"),
        "{out}"
    );
    let out = p.ok(&["compile", "--inline", "select * from {{ ref('orders') }}"]);
    assert!(out.contains("\"main\".\"orders\""), "{out}");
}

#[test]
fn dbt_environment_variables_and_flags_are_understood() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='table') }} select 1 as x",
    )]);
    // Another target and profile, chosen as dbt users do.
    p.write(
        "profiles.yml",
        &format!(
            "{}  outputs:\n    dev: {{type: strata}}\n    ci: {{type: strata, schema: ci}}\nother:\n  target: dev\n  outputs:\n    dev: {{type: strata, schema: elsewhere}}\n",
            "t:\n  target: dev\n"
        ),
    );
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = crate::project::strata_in(std::env::temp_dir().as_path());
        c.args(args).env("STRATA_PROFILES_DIR", p.path());
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().expect("run strata");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dir = p.path().to_string_lossy().into_owned();
    // DBT_PROJECT_DIR and DBT_TARGET.
    run(
        &[("DBT_PROJECT_DIR", dir.as_str()), ("DBT_TARGET", "ci")],
        &["run", "--no-partial-parse"],
    );
    assert!(p.path().join(".strata/ci").exists());
    // --profile picks another profile.
    let out = run(
        &[],
        &[
            "--project-dir",
            dir.as_str(),
            "--profile",
            "other",
            "ls",
            "-o",
            "json",
        ],
    );
    assert!(out.contains("m"), "{out}");
    run(
        &[],
        &["--project-dir", dir.as_str(), "--profile", "other", "run"],
    );
    assert!(p.path().join(".strata/dev/elsewhere/m").exists());
}

#[test]
fn empty_builds_every_model_with_no_rows() {
    let p = TestProject::with_files(&[
        ("seeds/raw.csv", "id,amount\n1,10\n2,20\n"),
        (
            "models/orders.sql",
            "{{ config(materialized='table') }} select id, amount * 2 as doubled from {{ ref('raw') }}",
        ),
        (
            "models/totals.sql",
            "{{ config(materialized='table') }} select count(*) as n, sum(doubled) as total from {{ ref('orders') }}",
        ),
    ]);
    p.ok(&["build", "--empty"]);
    // Seeds load; models are built with their columns and no rows read.
    assert_eq!(p.query("select count(*) as n from raw"), vec!["n", "2"]);
    assert_eq!(p.query("select count(*) as n from orders"), vec!["n", "0"]);
    assert_eq!(p.query("select n from totals"), vec!["n", "0"]);
    p.ok(&["run"]);
    assert_eq!(p.query("select n from totals"), vec!["n", "2"]);
}

#[test]
fn retry_runs_again_what_failed_or_was_skipped() {
    let p = TestProject::with_files(&[
        ("models/good.sql", "select 1 as id"),
        (
            "models/bad.sql",
            "select missing_column from {{ ref('good') }}",
        ),
        ("models/after_bad.sql", "select * from {{ ref('bad') }}"),
    ]);
    let out = p.fails(&["run"], 1);
    assert!(out.contains("SKIP"), "{out}");
    // Nothing fixed: the same two nodes, only them.
    let out = p.fails(&["retry"], 1);
    assert!(out.contains("Running 2 models"), "{out}");
    p.write("models/bad.sql", "select id from {{ ref('good') }}");
    let out = p.ok(&["retry"]);
    assert!(
        out.contains("Running 2 models") && out.contains("PASS=2"),
        "{out}"
    );
    let out = p.ok(&["retry"]);
    assert!(out.contains("Nothing to retry"), "{out}");
}

#[test]
fn run_operation_calls_a_macro_with_arguments() {
    let p = TestProject::with_files(&[
        (
            "models/orders.sql",
            "{{ config(materialized='table') }} select 1 as id union all select 2 as id",
        ),
        (
            "macros/ops.sql",
            "{% macro count_rows(model, at_least=0) %}{% set r = run_query('select count(*) as n from ' ~ ref(model)) %}{% do log('rows: ' ~ r.columns[0].values()[0], info=true) %}{{ return(r.columns[0].values()[0] >= at_least) }}{% endmacro %}",
        ),
    ]);
    p.ok(&["run"]);
    let out = p
        .strata(&[
            "run-operation",
            "count_rows",
            "--args",
            "{model: orders, at_least: 2}",
        ])
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("rows: 2"), "{all}");
    assert!(all.contains("True"), "{all}");
    let err = p.fails(&["run-operation", "no_such_macro"], 2);
    assert!(err.contains("no_such_macro"), "{err}");
}

#[test]
fn log_level_chooses_what_is_shown() {
    let p = TestProject::with_files(&[
        ("models/m.sql", "select 1 as x"),
        (
            "models/props.yml",
            "version: 2\nmetrics:\n  - name: revenue\n",
        ),
    ]);
    let stderr = |args: &[&str]| {
        let out = p.strata(args).output().expect("run strata");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(stderr(&["ls"]).contains("`metrics:` is not supported yet"));
    assert!(!stderr(&["--log-level", "error", "ls"]).contains("`metrics:`"));
}

#[test]
fn run_operation_refuses_arguments_it_cannot_read() {
    let p = TestProject::with_files(&[(
        "macros/ops.sql",
        "{% macro greet(name) %}{{ return('hi ' ~ name) }}{% endmacro %}",
    )]);
    let err = p.fails(&["run-operation", "greet", "--args", "[1, 2"], 2);
    assert!(err.contains("--args"), "{err}");
    let err = p.fails(&["run-operation", "gret"], 2);
    assert!(
        err.contains("no macro named `gret`") && err.contains("greet"),
        "{err}"
    );
    let err = p.fails(&["run-operation", "greet; drop"], 2);
    assert!(err.contains("is not a macro name"), "{err}");
}
