//! No lost or doubled data: writes that fail after committing, projects copied or moved,
//! hostile names, queries that change between evaluations, refs the parse cannot see,
//! misspelt keys, and two metadata stores over one lake.

use std::path::Path;

use crate::project::TestProject;

/// Copy a folder recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Versions `strata history` lists for a model.
fn versions(dir: &Path, model: &str) -> usize {
    let out = crate::project::strata_in(dir)
        .args(["history", model, "--json"])
        .output()
        .expect("history");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    list.as_array().map(Vec::len).unwrap_or_default()
}

#[test]
fn a_write_that_fails_after_its_commit_keeps_the_committed_version() {
    let p = TestProject::with_files(&[(
        "models/events.sql",
        "{{ config(materialized='incremental') }}select {{ var('n', 0) }} as n",
    )]);
    let run = |n: u32| p.ok(&["run", "--vars", &format!("{{n: {n}}}")]);
    for n in 0..9 {
        run(n);
    }
    // Incremental tables checkpoint every 10 commits: version 9's checkpoint cannot be
    // written (a folder holds its name), so delta-rs reports an error after the commit.
    let log = p.path().join(".strata/dev/main/events/_delta_log");
    std::fs::create_dir(log.join("00000000000000000009.checkpoint.parquet")).expect("block");
    let out = run(9);
    assert!(out.contains("a step after the commit failed"), "{out}");
    assert_eq!(
        p.query("select count(*) as rows, sum(n) as total from events"),
        vec!["rows,total", "10,45"]
    );
    // The table goes on: the next write commits, and the files of version 9 are still read.
    run(10);
    assert_eq!(
        p.query("select count(*) as rows, sum(n) as total from events"),
        vec!["rows,total", "11,55"]
    );
}

const GROWING: &str = "{{ config(materialized='incremental') }}\n\
select value as id from generate_series(1, {{ var('upto', 2) }})\n\
{% if is_incremental() %}where value > (select coalesce(max(id), 0) from {{ this }}){% endif %}";

#[test]
fn a_copied_project_works_on_its_own_tables() {
    let p = TestProject::with_files(&[("models/ids.sql", GROWING)]);
    p.ok(&["run"]);
    let copy = TestProject::empty();
    copy_dir(p.path(), copy.path());
    copy.ok(&["run", "--vars", "{upto: 5}"]);
    assert_eq!(
        copy.query("select count(*) as n, count(distinct id) as d from ids"),
        vec!["n,d", "5,5"]
    );
    assert_eq!(versions(copy.path(), "ids"), 2);
    // The original is untouched, and its history is its own.
    assert_eq!(p.query("select count(*) as n from ids"), vec!["n", "2"]);
    assert_eq!(versions(p.path(), "ids"), 1);
    copy.ok(&["rollback", "ids", "--to-version", "0"]);
    assert_eq!(versions(p.path(), "ids"), 1);
}

#[test]
fn a_moved_project_finds_its_tables() {
    let p = TestProject::with_files(&[("models/ids.sql", GROWING)]);
    p.ok(&["run"]);
    let moved = TestProject::empty();
    let to = moved.path().join("elsewhere");
    std::fs::rename(p.path(), &to).expect("move");
    let run = crate::project::strata_in(&to)
        .args(["run", "--vars", "{upto: 3}"])
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = crate::project::strata_in(&to)
        .args([
            "show",
            "--inline",
            "select count(*) as n, count(distinct id) as d from ids",
            "--output",
            "csv",
        ])
        .output()
        .expect("show");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n,d\n3,3\n");
    // Put it back so the temporary folder cleans up.
    std::fs::rename(&to, p.path()).expect("move back");
}

#[test]
fn names_that_would_leave_the_lake_are_refused() {
    let p = TestProject::with_files(&[
        (
            "models/keep.sql",
            "{{ config(materialized='table') }}select 1 as x",
        ),
        (
            "models/up.sql",
            "{{ config(materialized='table', alias='..') }}select 1 / 0 as x",
        ),
        (
            "models/across.sql",
            "{{ config(materialized='table', schema='../../elsewhere') }}select 1 as x",
        ),
        (
            "models/sep.sql",
            "{{ config(materialized='view', alias='a\\\\b') }}select 1 as x",
        ),
    ]);
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("the table name `..` cannot be used in the lake"),
        "{out}"
    );
    assert!(
        out.contains("cannot be used in the lake: it contains `/`"),
        "{out}"
    );
    assert!(out.contains("it contains `\\`"), "{out}");
    assert!(out.contains("PASS=1"), "{out}");
    // The lake, its catalog and the other table are intact; nothing was written outside.
    assert!(p.path().join(".strata/dev/metadata.sqlite").is_file());
    assert_eq!(p.query("select x from keep"), vec!["x", "1"]);
    assert!(!p.path().join(".strata/elsewhere").exists());
    assert!(!p.path().join("elsewhere").exists());
}

#[test]
fn a_query_that_changes_between_evaluations_writes_one_consistent_change() {
    let p = TestProject::with_files(&[
        (
            "snapshots/flaky.sql",
            "{% snapshot flaky %}\n{{ config(unique_key='id', strategy='check', check_cols=['v'], hard_deletes='invalidate') }}\n\
             select value as id, case when random() < 0.5 then 'a' else 'b' end as v\n\
             from generate_series(1, 300) where random() < 0.9\n{% endsnapshot %}\n",
        ),
        (
            "models/picked.sql",
            "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='id') }}\n\
             select value as id, random() as r from generate_series(1, 300) where random() < 0.5",
        ),
    ]);
    for _ in 0..3 {
        p.ok(&["build"]);
    }
    // One current version per record, whatever the query returned at each reading.
    assert_eq!(
        p.query("select count(*) as n from (select id from flaky where dbt_valid_to is null group by id having count(*) > 1) as t"),
        vec!["n", "0"]
    );
    assert_eq!(
        p.query("select count(*) - count(distinct id) as doubled from picked"),
        vec!["doubled", "0"]
    );
}

#[test]
fn a_ref_seen_only_at_run_time_must_be_declared() {
    let p = TestProject::with_files(&[
        ("models/a.sql", "select 1 as x"),
        (
            "models/b.sql",
            "select * from {% if execute %}{{ ref('a') }}{% else %}nothing{% endif %}",
        ),
    ]);
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("`ref('a')` is only called when the model runs"),
        "{out}"
    );
    assert!(
        out.contains("add this line at the top of the model: -- depends_on: {{ ref('a') }}"),
        "{out}"
    );
    p.write(
        "models/b.sql",
        "-- depends_on: {{ ref('a') }}\nselect * from {% if execute %}{{ ref('a') }}{% else %}nothing{% endif %}",
    );
    p.ok(&["run"]);
    assert_eq!(p.ok(&["ls", "--select", "+b"]).lines().count(), 2);
    assert_eq!(p.query("select x from b"), vec!["x", "1"]);
}

#[test]
fn a_misspelt_unique_key_is_an_error_on_every_build() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='incremental', unique_key='idd') }}select 1 as id",
    )]);
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("unique_key `idd` is not a column of the model's query"),
        "{out}"
    );
    assert!(out.contains("did you mean `id`"), "{out}");
    assert!(!p.path().join(".strata/dev/main/m").exists());
    // An explicit append strategy does not make a wrong key harmless either.
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='append', unique_key='idd') }}select 1 as id",
    );
    p.fails(&["run"], 1);
}

#[test]
fn a_lake_is_written_by_one_metadata_store() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='table') }}select 1 as x",
    )]);
    p.write(
        "profiles.yml",
        "t:\n  target: one\n  outputs:\n    one: {type: strata, schema: main, lake: shared, metadata: one.sqlite}\n    two: {type: strata, schema: main, lake: shared, metadata: two.sqlite}\n",
    );
    p.ok(&["run"]);
    let out = p.fails(&["--target", "two", "run"], 1);
    assert!(
        out.contains("is written by another metadata store"),
        "{out}"
    );
    assert!(out.contains("one.sqlite"), "{out}");
    // The first store goes on writing.
    p.ok(&["run"]);
}

#[test]
fn columns_built_without_nulls_accept_them_later() {
    // A warehouse's `create table as select` makes nullable columns: so do Strata's tables.
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='incremental', post_hook=\"insert into {{ this }} (id) values (9)\") }}\n\
         select {% if is_incremental() %}2{% else %}1{% endif %} as id,\n\
         {% if is_incremental() %}cast(null as varchar){% else %}'a'{% endif %} as v",
    )]);
    p.ok(&["run"]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select id, v is null as missing from m order by id"),
        vec!["id,missing", "1,false", "2,true", "9,true", "9,true"]
    );
}
