//! `--select` / `--exclude` with dbt's grammar, checked through `strata ls`.

use crate::project::TestProject;

fn graph() -> TestProject {
    // a -> b -> c -> d, a -> e; tags and materializations differ.
    TestProject::with_files(&[
        (
            "models/a.sql",
            "{{ config(tags=['nightly']) }}select 1 as id",
        ),
        ("models/sub/b.sql", "select * from {{ ref('a') }}"),
        (
            "models/sub/c.sql",
            "{{ config(materialized='table') }}select * from {{ ref('b') }}",
        ),
        ("models/d.sql", "select * from {{ ref('c') }}"),
        (
            "models/e.sql",
            "{{ config(materialized='table', tags='nightly') }}select * from {{ ref('a') }}",
        ),
    ])
}

fn names(p: &TestProject, args: &[&str]) -> Vec<String> {
    let mut full = vec!["ls", "-o", "name"];
    full.extend_from_slice(args);
    let mut v: Vec<String> = p.ok(&full).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn graph_operators() {
    let p = graph();
    assert_eq!(names(&p, &["-s", "c"]), ["c"]);
    assert_eq!(names(&p, &["-s", "+c"]), ["a", "b", "c"]);
    assert_eq!(names(&p, &["-s", "1+c"]), ["b", "c"]);
    assert_eq!(names(&p, &["-s", "b+"]), ["b", "c", "d"]);
    assert_eq!(names(&p, &["-s", "b+1"]), ["b", "c"]);
    assert_eq!(names(&p, &["-s", "@b"]), ["a", "b", "c", "d"]);
}

#[test]
fn methods_unions_and_intersections() {
    let p = graph();
    assert_eq!(names(&p, &["-s", "tag:nightly"]), ["a", "e"]);
    assert_eq!(names(&p, &["-s", "config.materialized:table"]), ["c", "e"]);
    assert_eq!(
        names(&p, &["-s", "tag:nightly,config.materialized:table"]),
        ["e"]
    );
    assert_eq!(names(&p, &["-s", "tag:nightly c"]), ["a", "c", "e"]);
    assert_eq!(names(&p, &["-s", "tag:nightly", "c"]), ["a", "c", "e"]);
    assert_eq!(names(&p, &["-s", "path:models/sub"]), ["b", "c"]);
    assert_eq!(names(&p, &["-s", "sub"]), ["b", "c"]);
    assert_eq!(names(&p, &["-s", "t.sub.b"]), ["b"]);
    assert_eq!(names(&p, &["-s", "models/sub/c.sql"]), ["c"]);
    assert_eq!(
        names(&p, &["-s", "a+", "--exclude", "sub"]),
        ["a", "d", "e"]
    );
    assert!(names(&p, &["-s", "nothing_matches"]).is_empty());
}

#[test]
fn run_builds_only_the_selection() {
    let p = graph();
    let out = p.ok(&["run", "-s", "+c"]);
    assert!(out.contains("TOTAL=3"), "{out}");
    assert_eq!(p.query("select count(*) as n from c"), vec!["n", "1"]);
    let missing = p.fails(&["show", "--inline", "select * from e"], 2);
    assert!(missing.contains("e"), "{missing}");
}

#[test]
fn bad_selectors_are_explained() {
    let p = graph();
    let out = p.fails(&["ls", "-s", "tags:nightly"], 2);
    assert!(out.contains("unknown selector method `tags`"), "{out}");
    assert!(out.contains("did you mean `tag`"), "{out}");
}

#[test]
fn state_selection_compares_with_an_earlier_manifest() {
    let p = TestProject::starter();
    p.ok(&["compile"]);
    std::fs::create_dir_all(p.path().join("prod-state")).expect("mkdir");
    std::fs::copy(
        p.path().join("target/manifest.json"),
        p.path().join("prod-state/manifest.json"),
    )
    .expect("copy");
    assert_eq!(
        p.ok(&["ls", "-s", "state:modified", "--state", "prod-state"]),
        ""
    );

    p.write(
        "models/staging/stg_orders.sql",
        &format!(
            "{}\nwhere status is not null\n",
            p.read("models/staging/stg_orders.sql")
        ),
    );
    p.write("models/marts/new_mart.sql", "select 1 as x");
    p.write(
        "strata.yml",
        &p.read("strata.yml").replace(
            "      +tags: [\"staging\"]",
            "      +tags: [\"staging\", \"hourly\"]",
        ),
    );
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["ls", "-o", "name", "--state", "prod-state"];
        full.extend_from_slice(args);
        p.ok(&full).lines().map(str::to_string).collect()
    };
    assert_eq!(names(&["-s", "state:new"]), ["new_mart"]);
    assert_eq!(
        names(&["-s", "state:modified.body"]),
        ["new_mart", "stg_orders"]
    );
    assert_eq!(
        names(&["-s", "state:modified"]),
        ["new_mart", "stg_customers", "stg_orders", "stg_payments"]
    );
    assert_eq!(
        names(&["-s", "state:modified.body+", "--resource-type", "model"]),
        ["customers", "new_mart", "orders", "stg_orders"]
    );
    // Building only what changed.
    let out = p.ok(&["run", "-s", "state:modified.body", "--state", "prod-state"]);
    assert!(out.contains("TOTAL=2"), "{out}");

    let out = p.fails(&["ls", "-s", "state:modified"], 2);
    assert!(out.contains("no --state was given"), "{out}");
}

#[test]
fn defer_reads_unbuilt_parents_from_the_state_run() {
    let p = TestProject::starter();
    p.prod_state();
    // Without --defer, dev cannot build customers alone: its parents are not in dev.
    let out = p.fails(&["run", "-s", "customers"], 1);
    assert!(out.contains("Failure in model customers"), "{out}");
    // With it, the parents come from prod; only customers is built in dev.
    let out = p.ok(&["run", "-s", "customers", "--state", "prod-state", "--defer"]);
    assert!(out.contains("PASS=1"), "{out}");
    assert_eq!(
        p.query("select count(*) as n from gold.customers"),
        vec!["n", "20"]
    );
    assert!(!p.path().join(".strata/dev/gold/orders").exists());
    let sql = p.read("target/compiled/shop/models/marts/customers.sql");
    assert!(sql.contains(r#""strata_state"."gold"."orders""#), "{sql}");
    // Deferred tables and views are read from the state run: change prod's orders and see it.
    p.write(
        "models/marts/orders.sql",
        "select order_id, customer_id, status, 0.0 as amount from {{ ref('stg_orders') }} where order_id <= 10",
    );
    p.ok(&["--target", "prod", "run", "-s", "orders"]);
    p.write(
        "models/marts/counts.sql",
        "select (select count(*) from {{ ref('orders') }}) as orders, (select count(*) from {{ ref('stg_orders') }}) as staged",
    );
    p.ok(&["run", "-s", "counts", "--state", "prod-state", "--defer"]);
    assert_eq!(
        p.query("select * from gold.counts"),
        vec!["orders,staged", "10,60"]
    );
}

#[test]
fn a_selector_matching_nothing_warns_with_the_closest_names() {
    let p = TestProject::with_files(&[("models/orders.sql", "select 1 as x")]);
    let stderr = |args: &[&str]| {
        let out = p.strata(args).output().expect("run strata");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = stderr(&["run", "-s", "ordres"]);
    assert!(
        out.contains("the selector `ordres` matches no enabled node") && out.contains("orders"),
        "{out}"
    );
    let out = stderr(&["ls", "-s", "tag:nightly"]);
    assert!(
        out.contains("the selector `tag:nightly` matches no enabled node"),
        "{out}"
    );
}

#[test]
fn exposures_are_kept_in_the_manifest_and_select_what_they_use() {
    let p = TestProject::with_files(&[
        ("models/stg.sql", "select 1 as id"),
        ("models/mart.sql", "select * from {{ ref('stg') }}"),
        ("models/other.sql", "select 2 as id"),
        (
            "models/exposures.yml",
            "version: 2\nexposures:\n  - name: weekly_report\n    type: dashboard\n    maturity: high\n    owner: {name: Ana, email: ana@example.com}\n    depends_on: [ref('mart')]\n",
        ),
    ]);
    let out = p.ok(&["ls", "-s", "+exposure:weekly_report"]);
    assert!(out.contains("t.mart") && out.contains("t.stg"), "{out}");
    assert!(!out.contains("t.other"), "{out}");
    let out = p.ok(&["ls", "-s", "1+exposure:weekly_report"]);
    assert!(out.contains("t.mart") && !out.contains("t.stg"), "{out}");
    p.ok(&["compile"]);
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let e = &manifest["exposures"]["exposure.t.weekly_report"];
    assert_eq!(e["type"], "dashboard");
    assert_eq!(e["depends_on"]["nodes"][0], "model.t.mart");
    // A dependency that does not exist is named.
    p.write(
        "models/exposures.yml",
        "version: 2\nexposures:\n  - name: r\n    type: dashboard\n    owner: {email: a@b.c}\n    depends_on: [ref('nope')]\n",
    );
    let err = p.fails(&["ls"], 2);
    assert!(
        err.contains("exposure `r` depends on `ref('nope')`"),
        "{err}"
    );
}

#[test]
fn named_selectors_from_selectors_yml() {
    let p = TestProject::with_files(&[
        (
            "models/stg_a.sql",
            "{{ config(tags=['nightly']) }} select 1 as id",
        ),
        (
            "models/stg_b.sql",
            "{{ config(tags=['nightly', 'slow']) }} select 1 as id",
        ),
        ("models/mart.sql", "select * from {{ ref('stg_a') }}"),
        ("models/other.sql", "select 2 as id"),
        (
            "selectors.yml",
            "selectors:\n  - name: nightly\n    definition:\n      union:\n        - method: tag\n          value: nightly\n          children: true\n        - exclude: ['tag:slow']\n  - name: marts_only\n    definition: 'mart'\n",
        ),
    ]);
    let out = p.ok(&["ls", "--selector", "nightly"]);
    assert!(out.contains("t.stg_a") && out.contains("t.mart"), "{out}");
    assert!(
        !out.contains("t.stg_b") && !out.contains("t.other"),
        "{out}"
    );
    let out = p.ok(&["ls", "--selector", "marts_only"]);
    assert_eq!(out.trim(), "t.mart");
    let err = p.fails(&["ls", "--selector", "nightyl"], 2);
    assert!(
        err.contains("selectors.yml has no selector `nightyl`") && err.contains("nightly"),
        "{err}"
    );
}

#[test]
fn indirect_selection_modes_and_unit_tests_go_with_their_model() {
    let p = TestProject::with_files(&[
        ("models/a.sql", "select 1 as id"),
        ("models/b.sql", "select 1 as id"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n        data_tests:\n          - unique\n          - relationships: {to: ref('b'), field: id}\nunit_tests:\n  - name: a_is_one\n    model: a\n    expect: {rows: [{id: 1}]}\n",
        ),
    ]);
    p.ok(&["run"]);
    let out = p.ok(&["build", "-s", "a"]);
    assert!(
        out.contains("unique_a_id") && out.contains("relationships_a_id"),
        "{out}"
    );
    assert!(out.contains("a_is_one"), "{out}");
    let out = p.ok(&["build", "-s", "a", "--indirect-selection", "cautious"]);
    assert!(
        out.contains("unique_a_id") && !out.contains("relationships_a_id"),
        "{out}"
    );
    let out = p.ok(&["build", "-s", "a", "--indirect-selection", "empty"]);
    assert!(!out.contains("unique_a_id"), "{out}");
}
