//! Bad input: each mistake gets a message naming the file, line or model and how to fix it,
//! and leaves every table that was already built as it was.

use crate::project::TestProject;

/// A project whose `keep` table is built before each mistake is made.
fn built() -> TestProject {
    let p = TestProject::with_files(&[
        (
            "models/keep.sql",
            "{{ config(materialized='table') }}select 1 as id union all select 2",
        ),
        ("models/customers.sql", "select 1 as id"),
    ]);
    p.ok(&["run"]);
    p
}

fn assert_intact(p: &TestProject) {
    assert_eq!(p.query("select count(*) as n from keep"), vec!["n", "2"]);
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let p = built();
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: keep\n    description: [unclosed\n",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("models/schema.yml:"), "{out}");
    assert!(out.contains("invalid YAML"), "{out}");
    p.remove("models/schema.yml");
    assert_intact(&p);
}

#[test]
fn malformed_project_file() {
    let p = built();
    p.write("strata.yml", "name: t\nprofile: [t\n");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("strata.yml:2"), "{out}");
}

#[test]
fn unknown_ref_suggests_the_closest_name() {
    let p = built();
    p.write("models/orders.sql", "select * from {{ ref('custmers') }}");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("models/orders.sql"), "{out}");
    assert!(out.contains("model `orders`"), "{out}");
    assert!(
        out.contains("ref('custmers') does not exist — did you mean `customers`?"),
        "{out}"
    );
    p.remove("models/orders.sql");
    assert_intact(&p);
}

#[test]
fn duplicate_model_names() {
    let p = built();
    p.write("models/sub/keep.sql", "select 3 as id");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("two models are named `keep`"), "{out}");
    assert!(
        out.contains("models/keep.sql") && out.contains("models/sub/keep.sql"),
        "{out}"
    );
    assert!(out.contains("rename one"), "{out}");
    p.remove("models/sub/keep.sql");
    assert_intact(&p);
}

#[test]
fn a_cycle_is_named() {
    let p = built();
    p.write("models/x.sql", "select * from {{ ref('y') }}");
    p.write("models/y.sql", "select * from {{ ref('z') }}");
    p.write("models/z.sql", "select * from {{ ref('x') }}");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("cycle"), "{out}");
    assert!(out.contains("x -> y -> z -> x"), "{out}");
    for m in ["x", "y", "z"] {
        p.remove(&format!("models/{m}.sql"));
    }
    assert_intact(&p);
}

#[test]
fn jinja_syntax_error_names_file_and_line() {
    let p = built();
    p.write(
        "models/broken.sql",
        "select 1 as a,\n{% if true %}\n  2 as b\n",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("models/broken.sql:2"), "{out}");
    assert!(out.contains("Jinja syntax error"), "{out}");
    p.remove("models/broken.sql");
    assert_intact(&p);
}

#[test]
fn sql_error_fails_the_model_and_names_it() {
    let p = built();
    p.write(
        "models/bad_sql.sql",
        "select no_such_column from {{ ref('keep') }}",
    );
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("Failure in model bad_sql (models/bad_sql.sql)"),
        "{out}"
    );
    assert!(out.contains("no_such_column"), "{out}");
    assert_intact(&p);
    p.write("models/bad_sql.sql", "selec 1");
    let out = p.fails(&["run", "-s", "bad_sql"], 1);
    assert!(out.contains("Failure in model bad_sql"), "{out}");
    assert_intact(&p);
}

#[test]
fn a_model_cannot_run_ddl() {
    let p = built();
    p.write("models/sneaky.sql", "drop table keep");
    let out = p.fails(&["run", "-s", "sneaky"], 1);
    assert!(out.contains("Failure in model sneaky"), "{out}");
    assert_intact(&p);
    // Statements DataFusion would run on a Delta table, were models not read-only: an insert
    // inside a table model, or given to `show`, and a COPY writing a file.
    p.write(
        "models/sneaky.sql",
        "{{ config(materialized='table') }}insert into keep select 99",
    );
    let out = p.fails(&["run", "-s", "sneaky"], 1);
    assert!(out.contains("only queries can run here"), "{out}");
    let out = p.fails(&["show", "--inline", "insert into keep select 99"], 2);
    assert!(out.contains("only queries can run here"), "{out}");
    let copy = format!(
        "copy (select 1 as x) to '{}' stored as csv",
        p.path().join("leak.csv").display()
    );
    p.fails(&["show", "--inline", &copy], 2);
    assert!(!p.path().join("leak.csv").exists());
    assert_intact(&p);
}

#[test]
fn missing_profile_and_target() {
    let p = built();
    let out = p.fails(&["run", "--target", "staging"], 2);
    assert!(
        out.contains("target `staging` not found in profile `t`"),
        "{out}"
    );
    assert!(out.contains("dev, prod"), "{out}");
    p.write("strata.yml", "name: t\nprofile: tt\n");
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("profile `tt` not found — did you mean `t`?"),
        "{out}"
    );
    p.remove("profiles.yml");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("no profiles.yml found"), "{out}");
}

#[test]
fn missing_project_file() {
    let p = TestProject::empty();
    let out = p.fails(&["run"], 2);
    assert!(out.contains("no project file"), "{out}");
    assert!(out.contains("strata init"), "{out}");
}

#[test]
fn unwritable_lake_is_reported() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='table') }}select 1 as x",
    )]);
    // A file where the lake folder should be: nothing can be created under it.
    p.write("blocked", "not a folder");
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main, lake: blocked/lake}\n",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("blocked/lake"), "{out}");
    assert!(out.contains("hint:"), "{out}");
}

#[test]
fn unknown_source_and_missing_file() {
    let p = built();
    p.write("models/s.sql", "select * from {{ source('raw', 'nope') }}");
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: raw\n    meta: {external_location: 'data/{name}.csv'}\n    tables: [{name: nope_file}]\n",
    );
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("source('raw', 'nope') is not declared — did you mean `raw.nope_file`?"),
        "{out}"
    );
    p.write(
        "models/s.sql",
        "select * from {{ source('raw', 'nope_file') }}",
    );
    let out = p.fails(&["run", "-s", "s"], 1);
    assert!(out.contains("data/nope_file.csv"), "{out}");
    assert_intact(&p);
}

#[test]
fn missing_vars_and_env_vars_say_how_to_set_them() {
    let p = built();
    p.write("models/v.sql", "select '{{ var(\"start\") }}' as s");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("required var `start` is not set"), "{out}");
    assert!(
        p.ok(&["run", "-s", "v", "--vars", "{start: '2024-01-01'}"])
            .contains("PASS=1")
    );
    let shown = p.ok(&[
        "--vars",
        "{start: '2024-01-01'}",
        "show",
        "--inline",
        "select s from v",
        "-o",
        "csv",
    ]);
    assert_eq!(shown, "s\n2024-01-01\n");
    p.write(
        "models/v.sql",
        "select '{{ env_var(\"STRATA_TEST_NOT_SET\") }}' as s",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("STRATA_TEST_NOT_SET"), "{out}");
    p.remove("models/v.sql");
    assert_intact(&p);
}

#[test]
fn disabled_models_are_skipped_and_refs_to_them_explained() {
    let p = TestProject::with_files(&[
        ("models/live/a.sql", "select 1 as id"),
        ("models/old/b.sql", "select 2 as id"),
        (
            "models/live/c.sql",
            "{{ config(enabled=false) }}select 3 as id",
        ),
    ]);
    p.write(
        "strata.yml",
        "name: t\nprofile: t\nmodels:\n  t:\n    +materialized: table\n    old:\n      +enabled: false\n",
    );
    let out = p.ok(&["run"]);
    assert!(out.contains("TOTAL=1"), "{out}");
    assert!(out.contains("table model main.a"), "{out}");
    p.write("models/live/d.sql", "select * from {{ ref('b') }}");
    let out = p.fails(&["run"], 2);
    assert!(out.contains("ref('b') does not exist"), "{out}");
    assert!(out.contains("model `b` is disabled"), "{out}");
}

#[test]
fn config_words_outside_their_list_are_refused_at_load() {
    let p = built();
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='merges', unique_key='id') }}select 1 as id",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("models/m.sql"), "{out}");
    assert!(
        out.contains("`incremental_strategy: merges` is not supported; use one of: append, merge, delete+insert, microbatch"),
        "{out}"
    );
    assert!(out.contains("did you mean `merge`"), "{out}");
    p.write(
        "models/m.sql",
        "{{ config(materialized='materialized_view') }}select 1 as id",
    );
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("`materialized: materialized_view` is not supported"),
        "{out}"
    );
    p.remove("models/m.sql");
    p.write(
        "snapshots/s.sql",
        "{% snapshot s %}{{ config(unique_key='id', strategy='check', check_cols='all', hard_deletes='remove') }}select 1 as id{% endsnapshot %}",
    );
    let out = p.fails(&["snapshot"], 2);
    assert!(out.contains("snapshots/s.sql"), "{out}");
    assert!(
        out.contains("`hard_deletes: remove` is not supported"),
        "{out}"
    );
    p.remove("snapshots/s.sql");
    assert_intact(&p);
}

#[test]
fn dbt_commands_strata_lacks_are_named_with_what_to_do_instead() {
    let p = TestProject::with_files(&[("models/m.sql", "select 1 as x")]);
    for (args, expected) in [
        (
            &["environment", "show"][..],
            "strata has no `environment` command",
        ),
        (&["invocation", "list"][..], "strata history MODEL"),
    ] {
        let err = p.fails(args, 2);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("similar subcommand"), "{args:?}: {err}");
    }
}

#[test]
fn what_strata_does_not_act_on_is_named_once() {
    let p = TestProject::with_files(&[
        ("models/m.sql", "select 1 as x"),
        (
            "models/py_model.py",
            "def model(dbt, session):\n    return None\n",
        ),
        (
            "models/props.yml",
            "version: 2\nmetrics:\n  - name: revenue\nsemantic_models:\n  - name: sm\nmodels:\n  - name: m\n    access: public\n    columns:\n      - name: x\n        constraints: [{type: not_null}]\n",
        ),
    ]);
    let out = p.strata(&["ls"]).output().expect("run strata");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "models/py_model.py: Python models are not supported",
        "models/props.yml: `metrics:` is not supported yet and is ignored",
        "models/props.yml: `semantic_models:` is not supported yet",
        "the property `access` (on `m`) is not supported yet",
        "the column property `constraints` (on `m.x`) is not supported yet",
    ] {
        assert_eq!(err.matches(expected).count(), 1, "{expected}: {err}");
    }
}
