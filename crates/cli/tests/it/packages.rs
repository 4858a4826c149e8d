//! Packages: local ones in place, hub and git ones from dbt_packages/ when installed there.

use crate::project::TestProject;

fn with_package(entry: &str, pkg_dir: &str) -> TestProject {
    TestProject::with_files(&[
        (
            &format!("{pkg_dir}/dbt_project.yml"),
            "name: my_utils\nversion: '1.0'\nconfig-version: 2\n",
        ),
        (
            &format!("{pkg_dir}/macros/money.sql"),
            "{% macro cents_to_units(x) %}({{ x }} / 100.0){% endmacro %}\n{% macro default__label(x) %}upper({{ x }}){% endmacro %}",
        ),
        (
            &format!("{pkg_dir}/tests/generic/is_positive.sql"),
            "{% test is_positive(model, column_name) %}select * from {{ model }} where {{ column_name }} <= 0{% endtest %}",
        ),
        ("packages.yml", entry),
        (
            "models/m.sql",
            "select {{ my_utils.cents_to_units('250') }} as units, {{ cents_to_units('100') }} as plain, {{ adapter.dispatch('label', 'my_utils')(\"'x'\") }} as l",
        ),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: units\n        tests: [my_utils.is_positive]\n",
        ),
    ])
}

#[test]
fn local_packages_provide_macros_and_tests() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    let out = p.ok(&["build"]);
    // dbt names a package's test with the package first.
    assert!(out.contains("PASS my_utils_is_positive_m_units"), "{out}");
    assert_eq!(
        p.query("select * from m"),
        vec!["units,plain,l", "2.5,1.0,X"]
    );
}

#[test]
fn hub_packages_are_used_when_installed_and_explained_when_not() {
    let p = with_package(
        "packages:\n  - package: acme/my_utils\n    version: 1.0.0\n",
        "dbt_packages/my_utils",
    );
    assert!(p.ok(&["run"]).contains("PASS=1"));
    let p = TestProject::with_files(&[(
        "packages.yml",
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: [\">=1.0.0\"]\n",
    )]);
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("package `dbt-labs/dbt_utils` must be downloaded"),
        "{out}"
    );
    assert!(out.contains("- local: path/to/dbt_utils"), "{out}");
}

#[test]
fn package_models_are_built_with_the_root_projects_configs() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    p.write(
        "vendor/my_utils/dbt_project.yml",
        "name: my_utils\nversion: '1.0'\nconfig-version: 2\nmodels:\n  my_utils:\n    +materialized: table\n",
    );
    p.write(
        "vendor/my_utils/models/calendar.sql",
        "select 1 as day union all select 2",
    );
    p.write(
        "models/uses_calendar.sql",
        "select count(*) as days from {{ ref('my_utils', 'calendar') }}",
    );
    p.write(
        "strata.yml",
        "name: t\nprofile: t\nmodels:\n  my_utils:\n    +schema: utils\n",
    );
    let out = p.ok(&["run"]);
    assert!(
        out.contains("OK created sql table model main_utils.calendar"),
        "{out}"
    );
    assert_eq!(p.query("select days from uses_calendar"), vec!["days", "2"]);
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    assert_eq!(
        manifest["nodes"]["model.my_utils.calendar"]["package_name"],
        "my_utils"
    );
    // A two-argument ref names the package that holds the model.
    p.write(
        "models/uses_calendar.sql",
        "select * from {{ ref('t', 'calendar') }}",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("is not in package `t`"), "{out}");
}

#[test]
fn packages_of_packages_are_loaded_as_dbt_deps_installs_them() {
    // my_utils (local) declares base_dates from the hub; `dbt deps` would have installed it in
    // the root's dbt_packages/, and my_utils also has a local package of its own.
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    p.write(
        "vendor/my_utils/packages.yml",
        "packages:\n  - package: acme/base_dates\n    version: 1.0.0\n  - local: extras\n",
    );
    p.write(
        "dbt_packages/base_dates/dbt_project.yml",
        "name: base_dates\nversion: '1.0'\n",
    );
    p.write(
        "dbt_packages/base_dates/macros/days.sql",
        "{% macro days_in_week() %}7{% endmacro %}",
    );
    p.write(
        "vendor/my_utils/extras/dbt_project.yml",
        "name: extras\nversion: '1.0'\n",
    );
    p.write(
        "vendor/my_utils/extras/macros/two.sql",
        "{% macro two() %}2{% endmacro %}",
    );
    p.write(
        "models/week.sql",
        "select {{ base_dates.days_in_week() }} as days, {{ extras.two() }} as two",
    );
    p.ok(&["run", "-s", "week"]);
    assert_eq!(p.query("select * from week"), vec!["days,two", "7,2"]);
    // A package that a package needs and nobody installed is named.
    std::fs::remove_dir_all(p.path().join("dbt_packages")).expect("rm");
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("vendor/my_utils/packages.yml") && out.contains("acme/base_dates"),
        "{out}"
    );
}

#[test]
fn a_package_qualified_test_uses_the_packages_macro() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    // The project has a test of the same name, with fewer arguments.
    p.write(
        "macros/tests.sql",
        "{% test is_positive(model, column_name) %}select 1 as broken{% endtest %}",
    );
    p.write(
        "vendor/my_utils/tests/generic/is_positive.sql",
        "{% test is_positive(model, column_name, strict=true) %}select * from {{ model }} where {{ column_name }} {{ '<=' if strict else '<' }} 0{% endtest %}",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: units\n        tests:\n          - my_utils.is_positive:\n              strict: false\n",
    );
    let out = p.ok(&["build"]);
    assert!(out.contains("PASS=2"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let test = manifest["nodes"]
        .as_object()
        .and_then(|n| n.values().find(|v| v["resource_type"] == "test"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(test["test_metadata"]["namespace"], "my_utils", "{test}");
}

#[test]
fn a_package_test_goes_through_its_own_wrapper_and_dispatch() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    // The wrapper gives `most` its default; the implementation has none, so calling it
    // directly would fail. `should_store_failures()` is dbt's helper.
    p.write(
        "vendor/my_utils/macros/at_most.sql",
        "{% test at_most(model, column_name, most = 10) %}{{ return(adapter.dispatch('test_at_most', 'my_utils')(model, column_name, most)) }}{% endtest %}\n\
         {% macro default__test_at_most(model, column_name, most) %}select {{ '*' if should_store_failures() else '1' }} from {{ model }} where {{ column_name }} > {{ most }}{% endmacro %}",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: units\n        tests:\n          - my_utils.at_most\n          - my_utils.at_most:\n              name: at_most_one\n              most: 1\n              config:\n                store_failures: true\n",
    );
    let out = p.fails(&["build"], 1);
    assert!(out.contains("PASS=2") && out.contains("ERROR=1"), "{out}");
    assert!(out.contains("FAIL 1 at_most_one"), "{out}");
}

#[test]
fn custom_materializations_load_and_a_model_using_one_is_told_plainly() {
    let mat = "{% macro helper() %}1{% endmacro %}\n\n{% materialization insert_only, default %}\n  {%- set target = this -%}\n  {% call statement('main') %}select 1{% endcall %}\n  {{ return({'relations': [target]}) }}\n{% endmaterialization %}\n{% macro after() %}2{% endmacro %}\n";
    let p = TestProject::with_files(&[
        ("macros/materializations.sql", mat),
        ("models/m.sql", "select {{ helper() }} + {{ after() }} as x"),
    ]);
    // The block loads; the macros around it work.
    p.ok(&["run"]);
    assert_eq!(p.query("select x from m"), vec!["x", "3"]);
    p.write(
        "models/n.sql",
        "{{ config(materialized='insert_only') }} select 1 as y",
    );
    let err = p.fails(&["run"], 2);
    assert!(
        err.contains(
            "materialized `insert_only` is a custom materialization (macros/materializations.sql:3)"
        ),
        "{err}"
    );
}

#[test]
fn dispatch_searches_the_root_project_then_the_package_unless_told_otherwise() {
    let files = [
        (
            "vendor/greeter/dbt_project.yml",
            "name: greeter\nversion: '1.0'\nconfig-version: 2\n",
        ),
        (
            "vendor/greeter/macros/greet.sql",
            "{% macro greet() %}{{ return(adapter.dispatch('greet', 'greeter')()) }}{% endmacro %}\n{% macro default__greet() %}'package default'{% endmacro %}\n{% macro duckdb__greet() %}'package duckdb'{% endmacro %}",
        ),
        ("packages.yml", "packages:\n  - local: vendor/greeter\n"),
        (
            "macros/mine.sql",
            "{% macro default__greet() %}'project default'{% endmacro %}",
        ),
        ("models/m.sql", "select {{ greeter.greet() }} as g"),
    ];
    // The root project's implementation comes first, even a less specific one.
    let p = TestProject::with_files(&files);
    p.ok(&["run"]);
    assert_eq!(p.query("select g from m"), vec!["g", "project default"]);
    // A `dispatch:` search order names the packages searched, in order; in each, the
    // duckdb__ implementation comes before default__.
    p.write(
        "strata.yml",
        &format!(
            "{}dispatch:\n  - macro_namespace: greeter\n    search_order: [greeter, t]\n",
            p.read("strata.yml")
        ),
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select g from m"), vec!["g", "package duckdb"]);
    // Nothing to find: every name tried is listed.
    p.write(
        "models/m.sql",
        "select {{ adapter.dispatch('wave', 'greeter')() }} as g",
    );
    let err = p.fails(&["run"], 2);
    assert!(
        err.contains("tried greeter.strata__wave, greeter.duckdb__wave, greeter.default__wave"),
        "{err}"
    );
}
