//! Building along the DAG: parallelism, failures that skip descendants, fail-fast, and
//! tables that survive failed rebuilds.

use crate::project::TestProject;

fn fan_out() -> TestProject {
    // bad fails at run time; child depends on it; other is independent.
    TestProject::with_files(&[
        (
            "models/base.sql",
            "{{ config(materialized='table') }}select 1 as id union all select 2",
        ),
        (
            "models/bad.sql",
            "{{ config(materialized='table') }}select id / (id - id) as boom from {{ ref('base') }}",
        ),
        ("models/child.sql", "select * from {{ ref('bad') }}"),
        (
            "models/grandchild.sql",
            "{{ config(materialized='table') }}select * from {{ ref('child') }}",
        ),
        (
            "models/other.sql",
            "{{ config(materialized='table') }}select id * 10 as id from {{ ref('base') }}",
        ),
    ])
}

#[test]
fn a_failure_skips_descendants_and_the_rest_continue() {
    let p = fan_out();
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("ERROR creating sql table model main.bad"),
        "{out}"
    );
    assert!(out.contains("SKIP relation main.child"), "{out}");
    assert!(out.contains("SKIP relation main.grandchild"), "{out}");
    assert!(
        out.contains("OK created sql table model main.other"),
        "{out}"
    );
    assert!(
        out.contains("PASS=2 WARN=0 ERROR=1 SKIP=2 TOTAL=5"),
        "{out}"
    );
    assert!(
        out.contains("Failure in model bad (models/bad.sql)"),
        "{out}"
    );
    assert!(out.contains("division by zero"), "{out}");
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).expect("json");
    let status = |id: &str| {
        results["results"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["unique_id"] == id))
            .map(|x| x["status"].clone())
    };
    assert_eq!(status("model.t.bad"), Some("error".into()));
    assert_eq!(status("model.t.grandchild"), Some("skipped".into()));
    assert_eq!(status("model.t.other"), Some("success".into()));
}

#[test]
fn fail_fast_stops_scheduling() {
    let p = fan_out();
    let out = p.fails(&["run", "--fail-fast", "--threads", "1"], 1);
    assert!(out.contains("ERROR=1"), "{out}");
    // With one thread, `other` (after `bad` in file order) never starts.
    assert!(out.contains("SKIP relation main.other"), "{out}");
}

#[test]
fn a_failed_rebuild_keeps_the_previous_table_and_leaves_no_files() {
    let p = TestProject::with_files(&[(
        "models/facts.sql",
        "{{ config(materialized='table') }}select * from (values (1, 10), (2, 20), (3, 30)) as t(id, amount)",
    )]);
    p.ok(&["run"]);
    let files_before = p.files_under(".strata/dev/main/facts");
    // The new version fails while rows are being written.
    p.write(
        "models/facts.sql",
        "{{ config(materialized='table') }}select id, amount / (id - 2) as amount from (values (1, 10), (2, 20), (3, 30)) as t(id, amount)",
    );
    let out = p.fails(&["run"], 1);
    assert!(out.contains("division by zero"), "{out}");
    assert_eq!(
        p.query("select sum(amount) as s from facts"),
        vec!["s", "60"]
    );
    assert_eq!(
        p.files_under(".strata/dev/main/facts"),
        files_before,
        "a failed build left files behind"
    );
    // A new table that fails is not created at all.
    p.write(
        "models/fresh.sql",
        "{{ config(materialized='table') }}select 1 / (1 - 1) as x",
    );
    p.fails(&["run", "-s", "fresh"], 1);
    assert!(!p.path().join(".strata/dev/main/fresh").exists());
}

#[test]
fn views_and_tables_swap_materialization() {
    let p = TestProject::with_files(&[("models/m.sql", "select 1 as x")]);
    p.ok(&["run"]);
    p.write(
        "models/m.sql",
        "{{ config(materialized='table') }}select 2 as x",
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select x from m"), vec!["x", "2"]);
    p.write("models/m.sql", "select 3 as x");
    p.ok(&["run"]);
    assert_eq!(p.query("select x from m"), vec!["x", "3"]);
    assert!(
        !p.path().join(".strata/dev/main/m").exists(),
        "the old table was not dropped"
    );
}

#[test]
fn ephemeral_models_are_inlined() {
    let p = TestProject::with_files(&[
        (
            "models/eph.sql",
            "{{ config(materialized='ephemeral') }}select 41 as x",
        ),
        (
            "models/eph2.sql",
            "{{ config(materialized='ephemeral') }}select x + 1 as x from {{ ref('eph') }}",
        ),
        (
            "models/final.sql",
            "with y as (select * from {{ ref('eph2') }}) select x from y",
        ),
    ]);
    let out = p.ok(&["run"]);
    assert!(out.contains("TOTAL=1"), "{out}");
    assert_eq!(p.query("select x from final"), vec!["x", "42"]);
    let sql = p.ok(&["compile", "-s", "final"]);
    assert!(sql.starts_with("with __dbt__cte__eph2 as ("), "{sql}");
}

#[test]
fn many_models_run_in_parallel_in_dependency_order() {
    let mut files: Vec<(String, String)> = vec![("models/m0.sql".into(), "select 0 as n".into())];
    for i in 1..40 {
        let mat = if i % 3 == 0 { "table" } else { "view" };
        files.push((
            format!("models/m{i}.sql"),
            format!(
                "{{{{ config(materialized='{mat}') }}}}select max(n) + 1 as n from (select n from {{{{ ref('m{}') }}}} union all select n from {{{{ ref('m{}') }}}}) as u",
                i - 1,
                i / 2
            ),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = TestProject::with_files(&refs);
    let out = p.ok(&["run", "--threads", "8"]);
    assert!(out.contains("PASS=40"), "{out}");
    assert_eq!(p.query("select max(n) as n from m39"), vec!["n", "39"]);
}

/// Paths of data files the Delta log of a table references in any version.
fn referenced_files(table_dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(table_dir.join("_delta_log"))
        .expect("log")
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(entry.path())
                .expect("commit")
                .lines()
            {
                let action: serde_json::Value = serde_json::from_str(line).expect("action");
                if let Some(path) = action["add"]["path"].as_str() {
                    out.insert(path.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn a_killed_build_keeps_the_previous_table_and_the_next_build_cleans_up() {
    let small = "{{ config(materialized='table') }}select value as v from generate_series(1, 3)";
    let big = "{{ config(materialized='table') }}select value as v, repeat('x', 200) as pad from generate_series(1, 30000000)";
    let p = TestProject::with_files(&[("models/big.sql", small)]);
    p.ok(&["run"]);
    let dir = p.path().join(".strata/dev/main/big");
    let before = p.files_under(".strata/dev/main/big");

    p.write("models/big.sql", big);
    let mut child = p
        .std_command(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the build finished before it could be killed"
        );
        let now = p.files_under(".strata/dev/main/big");
        if now
            .iter()
            .any(|f| !before.contains(f) && !f.to_string_lossy().contains("_strata_write"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build wrote nothing in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // The previous version is intact.
    assert_eq!(p.query("select sum(v) as s from big"), vec!["s", "6"]);

    // The next build finishes and leaves only files the log knows about.
    p.write(
        "models/big.sql",
        "{{ config(materialized='table') }}select value as v from generate_series(1, 4)",
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select sum(v) as s from big"), vec!["s", "10"]);
    let referenced = referenced_files(&dir);
    for f in p.files_under(".strata/dev/main/big") {
        let rel = f
            .strip_prefix(&dir)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("_delta_log") {
            continue;
        }
        assert!(referenced.contains(&rel), "orphan file left behind: {rel}");
    }
}

#[test]
fn history_lists_versions_and_rollback_restores_one() {
    let p = TestProject::with_files(&[(
        "models/t.sql",
        "{{ config(materialized='table') }}select 1 as v",
    )]);
    p.ok(&["run"]);
    p.write(
        "models/t.sql",
        "{{ config(materialized='table') }}select 2 as v union all select 3",
    );
    p.ok(&["run"]);
    let history: serde_json::Value =
        serde_json::from_str(p.ok(&["history", "t", "--json"]).trim()).expect("json");
    let versions = history.as_array().expect("list");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["operation"], "WRITE");
    assert_eq!(versions[0]["rows_written"], 2);
    assert!(versions[0]["run_id"].is_string());
    assert_eq!(versions[1]["version"], 0);
    assert!(p.ok(&["history", "t"]).contains("WRITE"));

    let out = p.ok(&["rollback", "t", "--to-version", "0"]);
    assert!(out.contains("version 0 again"), "{out}");
    assert_eq!(p.query("select v from t"), vec!["v", "1"]);
    let history: serde_json::Value =
        serde_json::from_str(p.ok(&["history", "t", "--json"]).trim()).expect("json");
    assert_eq!(history[0]["operation"], "RESTORE");
    assert_eq!(history[0]["version"], 2);

    let out = p.fails(&["rollback", "t", "--to-version", "9"], 2);
    assert!(out.contains("there is no version 9"), "{out}");
    p.write("models/w.sql", "select 1 as x");
    p.ok(&["run", "-s", "w"]);
    let out = p.fails(&["history", "w"], 2);
    assert!(out.contains("is a view"), "{out}");
}

#[test]
fn optimize_compacts_and_vacuum_keeps_what_readers_need() {
    let p = TestProject::with_files(&[(
        "models/t.sql",
        "{{ config(materialized='table', cluster_by=['id']) }}select 1 as id",
    )]);
    for i in 0..3 {
        p.write(
            "models/t.sql",
            &format!("{{{{ config(materialized='table', cluster_by=['id']) }}}}select {i} as id"),
        );
        p.ok(&["run"]);
    }
    let out = p.ok(&["optimize", "-s", "t"]);
    assert!(out.contains("t: "), "{out}");
    assert_eq!(p.query("select id from t"), vec!["id", "2"]);
    // Old versions' files are kept within the retention period...
    let out = p.ok(&["vacuum", "--dry-run"]);
    assert!(out.contains("t: 0 files would be deleted"), "{out}");
    assert_eq!(
        p.query("select id from table_at_version('main.t', 0)"),
        vec!["id", "0"]
    );
    // ...and a shorter retention is refused.
    let out = p.fails(&["vacuum", "--retain-hours", "0"], 2);
    assert!(out.contains("Invalid retention period"), "{out}");
    assert!(out.contains("hint:"), "{out}");
}

#[test]
fn partitioned_tables_write_one_folder_per_value() {
    let p = TestProject::with_files(&[(
        "models/events.sql",
        "{{ config(materialized='table', partition_by='day') }}select * from (values (1, '2024-01-01'), (2, '2024-01-01'), (3, '2024-01-02')) as t(id, day)",
    )]);
    p.ok(&["run"]);
    let dir = p.path().join(".strata/dev/main/events");
    assert!(dir.join("day=2024-01-01").is_dir(), "no partition folder");
    assert!(dir.join("day=2024-01-02").is_dir(), "no partition folder");
    assert_eq!(
        p.query("select day, count(*) as n from events group by day order by day"),
        vec!["day,n", "2024-01-01,2", "2024-01-02,1"]
    );
    // Rebuilding without partitions replaces the layout in one commit.
    p.write(
        "models/events.sql",
        "{{ config(materialized='table') }}select 9 as id, '2024-01-03' as day",
    );
    p.ok(&["run"]);
    assert_eq!(
        p.query("select id, day from events"),
        vec!["id,day", "9,2024-01-03"]
    );
}

#[test]
fn incremental_models_append_and_merge() {
    let p = TestProject::with_files(&[
        ("seeds/events.csv", "id,amount\n1,10\n2,20\n"),
        (
            "models/appended.sql",
            "{{ config(materialized='incremental') }}\nselect id, amount from {{ ref('events') }}\n{% if is_incremental() %}where id > (select max(id) from {{ this }}){% endif %}",
        ),
        (
            "models/merged.sql",
            "{{ config(materialized='incremental', unique_key='id') }}\nselect id, amount from {{ ref('events') }}",
        ),
    ]);
    p.ok(&["seed"]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select count(*) as n from appended"),
        vec!["n", "2"]
    );
    // New and changed rows arrive.
    p.write("seeds/events.csv", "id,amount\n1,10\n2,25\n3,30\n");
    p.ok(&["seed"]);
    let out = p.ok(&["run"]);
    assert!(out.contains("MERGE 3"), "{out}");
    // append: only the new row was added; merge: row 2 updated, row 3 inserted.
    assert_eq!(
        p.query("select id, amount from appended order by id"),
        vec!["id,amount", "1,10", "2,20", "3,30"]
    );
    assert_eq!(
        p.query("select id, amount from merged order by id"),
        vec!["id,amount", "1,10", "2,25", "3,30"]
    );
    let history: serde_json::Value =
        serde_json::from_str(p.ok(&["history", "merged", "--json"]).trim()).expect("json");
    assert_eq!(history[0]["operation"], "MERGE");
    // --full-refresh rebuilds from the query alone.
    p.write("seeds/events.csv", "id,amount\n7,70\n");
    p.ok(&["seed"]);
    p.ok(&["run", "--full-refresh"]);
    assert_eq!(p.query("select id from appended"), vec!["id", "7"]);
    assert_eq!(p.query("select id from merged"), vec!["id", "7"]);
}

#[test]
fn incremental_schema_changes_and_merge_columns() {
    let p = TestProject::with_files(&[
        ("seeds/src.csv", "id,a,b\n1,x,10\n"),
        (
            "models/inc.sql",
            "{{ config(materialized='incremental', unique_key='id', merge_exclude_columns=['b']) }}\nselect id, a, b from {{ ref('src') }}",
        ),
    ]);
    p.ok(&["seed"]);
    p.ok(&["run"]);
    // merge_exclude_columns: b keeps its first value when the row is updated.
    p.write("seeds/src.csv", "id,a,b\n1,y,99\n");
    p.ok(&["seed"]);
    p.ok(&["run"]);
    assert_eq!(
        p.query("select id, a, b from inc"),
        vec!["id,a,b", "1,y,10"]
    );
    // A new column: ignored by default (the table keeps its columns)...
    p.write(
        "models/inc.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\nselect id, a, b, 'new' as c from {{ ref('src') }}",
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select * from inc"), vec!["id,a,b", "1,y,99"]);
    // ...refused with `fail`, without writing anything...
    p.write(
        "models/inc.sql",
        "{{ config(materialized='incremental', unique_key='id', on_schema_change='fail') }}\nselect id, a, b, 'new' as c from {{ ref('src') }}",
    );
    let out = p.fails(&["run"], 1);
    assert!(
        out.contains("on_schema_change is `fail`; nothing was written"),
        "{out}"
    );
    assert!(out.contains("new: c"), "{out}");
    // ...and added with `append_new_columns`.
    p.write(
        "models/inc.sql",
        "{{ config(materialized='incremental', on_schema_change='append_new_columns') }}\nselect id + 1 as id, a, b, 'new' as c from {{ ref('src') }}",
    );
    p.ok(&["run"]);
    assert_eq!(
        p.query("select id, c from inc order by id"),
        vec!["id,c", "1,", "2,new"]
    );
}
