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

#[test]
fn a_template_query_does_not_stall_nodes_already_building() {
    // `waits` keeps asking whether `first` exists while it compiles; `first` can only be built
    // meanwhile if compiling runs off the loop that drives the running nodes.
    let waits = r#"{% set seen = namespace(yes=false) %}
{% for i in range(3000) if not seen.yes %}
{% if adapter.get_relation(database=this.database, schema=this.schema, identifier='first') is not none %}{% set seen.yes = true %}{% endif %}
{% endfor %}
select {{ 1 if seen.yes else 0 }} as saw_first"#;
    let p = TestProject::with_files(&[
        (
            "models/first.sql",
            "{{ config(materialized='table') }}select 1 as id",
        ),
        ("models/waits.sql", waits),
    ]);
    let out = p.ok(&["run", "--threads", "2"]);
    assert!(out.contains("PASS=2"), "{out}");
    assert_eq!(
        p.query("select saw_first from waits"),
        vec!["saw_first", "1"]
    );
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
    p.write("models/big.sql", big);
    p.kill_while_writing(&["run"], ".strata/dev/main/big");

    // The previous version is intact.
    assert_eq!(p.query("select sum(v) as s from big"), vec!["s", "6"]);

    // The next build finishes and leaves only files the log knows about.
    p.write(
        "models/big.sql",
        "{{ config(materialized='table') }}select value as v from generate_series(1, 4)",
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select sum(v) as s from big"), vec!["s", "10"]);
    assert_no_orphans(&p, ".strata/dev/main/big");
}

/// Every data file under a table folder is part of some version of the table.
fn assert_no_orphans(p: &TestProject, table: &str) {
    let dir = p.path().join(table);
    let referenced = referenced_files(&dir);
    for f in p.files_under(table) {
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
fn a_killed_merge_keeps_the_previous_version_and_the_next_run_completes() {
    // 1.5M rows, every one of them updated by the second run: a merge that takes a while.
    let model = "{{ config(materialized='incremental', unique_key='id') }}\nselect value as id, value * {{ var('round', 1) }} as v, repeat('x', 60) as pad from generate_series(1, 1500000)";
    let p = TestProject::with_files(&[("models/facts.sql", model)]);
    p.ok(&["run", "--vars", "{round: 1}"]);
    let total: u64 = (1..=1_500_000u64).sum();
    p.kill_while_writing(&["run", "--vars", "{round: 2}"], ".strata/dev/main/facts");
    // The previous version is intact.
    assert_eq!(
        p.query("select count(*) as n, sum(v) as s from facts"),
        vec!["n,s".to_string(), format!("1500000,{total}")]
    );
    // The next run finishes: every row updated once, none duplicated or lost, no leftovers.
    p.ok(&["run", "--vars", "{round: 2}"]);
    assert_eq!(
        p.query("select count(*) as n, count(distinct id) as ids, sum(v) as s from facts"),
        vec![
            "n,ids,s".to_string(),
            format!("1500000,1500000,{}", 2 * total)
        ]
    );
    assert_no_orphans(&p, ".strata/dev/main/facts");
}

#[test]
fn a_killed_snapshot_keeps_the_previous_version_and_the_next_run_completes() {
    let snapshot = "{% snapshot dim %}\n{{ config(unique_key='id', strategy='check', check_cols=['v']) }}\nselect value as id, value * {{ var('round', 1) }} as v, repeat('x', 60) as pad from generate_series(1, 1000000)\n{% endsnapshot %}";
    let p = TestProject::with_files(&[("snapshots/dim.sql", snapshot)]);
    p.ok(&["snapshot", "--vars", "{round: 1}"]);
    p.kill_while_writing(
        &["snapshot", "--vars", "{round: 2}"],
        ".strata/dev/main/dim",
    );
    assert_eq!(
        p.query("select count(*) as n, count(dbt_valid_to) as closed from dim"),
        vec!["n,closed", "1000000,0"]
    );
    p.ok(&["snapshot", "--vars", "{round: 2}"]);
    // Every record: its first version closed, its second current; no duplicates.
    assert_eq!(
        p.query(
            "select count(*) as n, count(distinct dbt_scd_id) as ids, count(dbt_valid_to) as closed, sum(case when dbt_valid_to is null then v else 0 end) = 2 * sum(case when dbt_valid_to is null then id else 0 end) as current_ok from dim"
        ),
        vec!["n,ids,closed,current_ok", "2000000,2000000,1000000,true"]
    );
    assert_no_orphans(&p, ".strata/dev/main/dim");
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

#[test]
fn incremental_delete_insert_predicates_and_sync_all_columns() {
    let p = TestProject::with_files(&[
        (
            "seeds/lines.csv",
            "order_id,line,amount,day\n1,1,10,2024-01-01\n1,2,20,2024-01-01\n2,1,5,2024-01-02\n",
        ),
        (
            "models/lines_di.sql",
            "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='order_id') }}\nselect order_id, line, amount from {{ ref('lines') }}",
        ),
        (
            "models/lines_recent.sql",
            "{{ config(materialized='incremental', unique_key=['order_id', 'line'], incremental_predicates=[\"DBT_INTERNAL_DEST.day >= '2024-01-02'\"]) }}\nselect order_id, line, amount, day from {{ ref('lines') }}",
        ),
    ]);
    p.ok(&["seed"]);
    p.ok(&["run"]);
    // Order 1 now has one line instead of two: delete+insert removes the stale line, which a
    // merge would keep.
    p.write(
        "seeds/lines.csv",
        "order_id,line,amount,day\n1,1,11,2024-01-01\n2,1,6,2024-01-02\n",
    );
    p.ok(&["seed"]);
    let out = p.ok(&["run"]);
    assert!(out.contains("DELETE 3 INSERT 2"), "{out}");
    assert_eq!(
        p.query("select order_id, line, amount from lines_di order by order_id, line"),
        vec!["order_id,line,amount", "1,1,11", "2,1,6"]
    );
    // incremental_predicates limit the rows the merge may touch: the old day's row is not
    // matched, so its new version is inserted beside it; the recent day's row is updated.
    assert_eq!(
        p.query("select order_id, line, amount from lines_recent order by order_id, line, amount"),
        vec![
            "order_id,line,amount",
            "1,1,10",
            "1,1,11",
            "1,2,20",
            "2,1,6"
        ]
    );
    // sync_all_columns: a column dropped and one added, rows kept, in one commit.
    p.write(
        "models/lines_di.sql",
        "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='order_id', on_schema_change='sync_all_columns') }}\nselect order_id, amount, 'eur' as currency from {{ ref('lines') }} where order_id = 2",
    );
    p.ok(&["run", "-s", "lines_di"]);
    assert_eq!(
        p.query("select * from lines_di order by order_id"),
        vec!["order_id,amount,currency", "1,11,", "2,6,eur"]
    );
    let history: serde_json::Value =
        serde_json::from_str(p.ok(&["history", "lines_di", "--json"]).trim()).expect("json");
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");
    // append_new_columns on a merge: the new column is added in the merge's commit.
    p.write(
        "models/lines_recent.sql",
        "{{ config(materialized='incremental', unique_key=['order_id', 'line'], on_schema_change='append_new_columns') }}\nselect order_id, line, amount, day, 'web' as channel from {{ ref('lines') }} where order_id = 2",
    );
    p.ok(&["run", "-s", "lines_recent"]);
    assert_eq!(
        p.query("select order_id, channel from lines_recent order by order_id, amount"),
        vec!["order_id,channel", "1,", "1,", "1,", "2,web"]
    );
    // A strategy that needs a key says so.
    p.write(
        "models/lines_di.sql",
        "{{ config(materialized='incremental', incremental_strategy='delete+insert') }}\nselect 1 as order_id",
    );
    let out = p.fails(&["run", "-s", "lines_di"], 1);
    assert!(out.contains("needs a `unique_key`"), "{out}");
}

#[test]
fn snapshots_record_history_both_forms() {
    let p = TestProject::with_files(&[
        (
            "seeds/customers.csv",
            "id,segment,updated_at\n1,a,2024-01-01 00:00:00\n2,b,2024-01-01 00:00:00\n3,c,2024-01-01 00:00:00\n",
        ),
        (
            "snapshots/customers_history.sql",
            "{% snapshot customers_history %}\n{{ config(unique_key='id', strategy='timestamp', updated_at='updated_at', hard_deletes='new_record') }}\nselect * from {{ ref('customers') }}\n{% endsnapshot %}\n",
        ),
        (
            "snapshots/snapshots.yml",
            "snapshots:\n  - name: segments_history\n    relation: ref('customers')\n    config:\n      unique_key: id\n      strategy: check\n      check_cols: [segment, updated_at]\n      hard_deletes: invalidate\n      dbt_valid_to_current: \"'9999-12-31'\"\n    columns:\n      - name: id\n        tests: [not_null]\n",
        ),
        (
            "models/current_segments.sql",
            "select id, segment from {{ ref('segments_history') }} where dbt_valid_to = '9999-12-31'",
        ),
    ]);
    p.ok(&["seed"]);
    // `run` builds models only; snapshots come from `snapshot` (or `build`).
    let out = p.ok(&["snapshot"]);
    assert!(
        out.contains("OK snapshotted main.customers_history"),
        "{out}"
    );
    assert!(
        out.contains("OK snapshotted main.segments_history"),
        "{out}"
    );
    // Record 2 changes, 3 is deleted, 4 is new.
    p.write(
        "seeds/customers.csv",
        "id,segment,updated_at\n1,a,2024-01-01 00:00:00\n2,z,2024-02-01 00:00:00\n4,d,2024-02-01 00:00:00\n",
    );
    p.ok(&["seed"]);
    p.ok(&["snapshot"]);
    assert_eq!(
        p.query(
            "select id, segment, cast(dbt_valid_from as varchar) as valid_from, cast(dbt_valid_to as varchar) as valid_to, dbt_is_deleted from customers_history where id <> 3 order by id, dbt_valid_from"
        ),
        vec![
            "id,segment,valid_from,valid_to,dbt_is_deleted",
            "1,a,2024-01-01T00:00:00,,False",
            "2,b,2024-01-01T00:00:00,2024-02-01T00:00:00,False",
            "2,z,2024-02-01T00:00:00,,False",
            "4,d,2024-02-01T00:00:00,,False",
        ]
    );
    // The deleted record is closed, and a version marks it deleted.
    assert_eq!(
        p.query(
            "select dbt_is_deleted, dbt_valid_to is null as current from customers_history where id = 3 order by dbt_valid_from"
        ),
        vec!["dbt_is_deleted,current", "False,false", "True,true"]
    );
    // check strategy: one current row per live record, dbt_valid_to_current for current rows,
    // the deleted record closed (invalidate), and unique scd ids.
    assert_eq!(
        p.query(
            "select id, segment from segments_history where dbt_valid_to = '9999-12-31' order by id"
        ),
        vec!["id,segment", "1,a", "2,z", "4,d"]
    );
    assert_eq!(
        p.query("select count(*) as n, count(distinct dbt_scd_id) as ids from segments_history"),
        vec!["n,ids", "5,5"]
    );
    // Nothing changed: nothing written. `build` runs snapshots, their tests and models.
    let out = p.ok(&["build"]);
    assert!(out.contains("[INSERT 0, UPDATE 0"), "{out}");
    // A YAML snapshot's SQL is kept under its file's path, beside its tests, as dbt keeps it:
    // `compile` after `build` finds a folder there, not a file.
    p.ok(&["compile"]);
    for file in ["segments_history.sql", "not_null_segments_history_id.sql"] {
        assert!(
            p.path()
                .join("target/compiled/t/snapshots/snapshots.yml")
                .join(file)
                .is_file(),
            "{file}"
        );
    }
    assert!(out.contains("not_null_segments_history_id"), "{out}");
    assert_eq!(
        p.query("select count(*) as n from current_segments"),
        vec!["n", "3"]
    );
    let listed = p.ok(&["ls", "--resource-type", "snapshot"]);
    assert!(listed.contains("customers_history") && listed.contains("segments_history"));
    // A config mistake is named before anything is written.
    p.write(
        "snapshots/customers_history.sql",
        "{% snapshot customers_history %}\n{{ config(unique_key='id', strategy='timestamp', updated_at='changed_at') }}\nselect * from {{ ref('customers') }}\n{% endsnapshot %}\n",
    );
    let out = p.fails(&["snapshot", "-s", "customers_history"], 1);
    assert!(
        out.contains("updated_at `changed_at` of snapshot snapshot.")
            && out.contains("is not a column of its query"),
        "{out}"
    );
    p.write("snapshots/broken.sql", "select 1");
    let out = p.fails(&["snapshot"], 2);
    assert!(
        out.contains("snapshots/broken.sql") && out.contains("snapshot block"),
        "{out}"
    );
}

#[test]
fn second_writer_on_a_target_waits_then_fails_clearly() {
    let p = TestProject::with_files(&[("models/a.sql", "select 1 as id")]);
    p.ok(&["run"]);
    // Hold the target's lock as another writer would.
    let lock = p.path().join(".strata/dev/metadata.sqlite.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
        .expect("lock file exists after a run");
    file.lock().expect("lock");
    std::fs::write(&lock, "`strata run` (pid 4242, started now)").expect("write");
    let out = p.fails(&["run", "--lock-timeout", "1"], 2);
    assert!(out.contains("Waiting for `strata run` (pid 4242"), "{out}");
    assert!(out.contains("the target is busy"), "{out}");
    // Reading is not blocked.
    p.ok(&["show", "--inline", "select * from a"]);
    file.unlock().expect("unlock");
    p.ok(&["run", "--lock-timeout", "0"]);
}

#[test]
fn microbatch_models_build_and_rebuild_periods() {
    let p = TestProject::with_files(&[
        (
            "seeds/events.csv",
            "id,user_id,ts\n1,1,2024-01-01 10:00:00\n2,2,2024-01-01 23:00:00\n3,1,2024-01-02 09:00:00\n4,3,2024-01-03 12:00:00\n",
        ),
        (
            "seeds/events.yml",
            "seeds:\n  - name: events\n    config:\n      event_time: ts\n",
        ),
        (
            "models/daily.sql",
            "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='day', batch_size='day', begin='2024-01-01') }}\nselect cast(date_trunc('day', ts) as timestamp) as day, count(*) as events, '{{ model.batch.id }}' as batch\nfrom {{ ref('events') }}\ngroup by 1",
        ),
    ]);
    p.ok(&["seed"]);
    let out = p.ok(&[
        "run",
        "--event-time-start",
        "2024-01-01",
        "--event-time-end",
        "2024-01-04",
    ]);
    assert!(
        out.contains("Batch 3 of 3 OK batch 20240103 of main.daily"),
        "{out}"
    );
    assert!(out.contains("[3 batches, 3 rows"), "{out}");
    assert_eq!(
        p.query("select cast(day as date) as day, events, batch from daily order by day"),
        vec![
            "day,events,batch",
            "2024-01-01,2,20240101",
            "2024-01-02,1,20240102",
            "2024-01-03,1,20240103"
        ]
    );
    // One commit per batch.
    let history: serde_json::Value =
        serde_json::from_str(p.ok(&["history", "daily", "--json"]).trim()).expect("json");
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");
    // Late data for two days; re-running one day's period replaces that day only.
    p.write(
        "seeds/events.csv",
        "id,user_id,ts\n1,1,2024-01-01 10:00:00\n2,2,2024-01-01 23:00:00\n9,2,2024-01-01 12:00:00\n3,1,2024-01-02 09:00:00\n8,2,2024-01-02 11:00:00\n4,3,2024-01-03 12:00:00\n",
    );
    p.ok(&["seed"]);
    p.ok(&[
        "run",
        "--event-time-start",
        "2024-01-02",
        "--event-time-end",
        "2024-01-03",
    ]);
    assert_eq!(
        p.query("select cast(day as date) as day, events from daily order by day"),
        vec!["day,events", "2024-01-01,2", "2024-01-02,2", "2024-01-03,1"]
    );
    // A batch that fails is retried alone, the others are written, and the message says which
    // period to re-run.
    p.write(
        "models/daily.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='day', batch_size='day', begin='2024-01-01') }}\nselect cast(date_trunc('day', ts) as timestamp) as day, cast(count(*) / (case when min(ts) > '2024-01-02 23:00:00' then 0 else 1 end) as bigint) as events, '{{ model.batch.id }}' as batch\nfrom {{ ref('events') }}\ngroup by 1",
    );
    let out = p.fails(
        &[
            "run",
            "--event-time-start",
            "2024-01-01",
            "--event-time-end",
            "2024-01-04",
        ],
        1,
    );
    assert!(out.contains("1 of 3 batches failed"), "{out}");
    assert!(out.contains("batch 20240103"), "{out}");
    assert!(
        out.contains(
            "--event-time-start '2024-01-03 00:00:00' --event-time-end '2024-01-04 00:00:00'"
        ),
        "{out}"
    );
    assert_eq!(
        p.query("select cast(day as date) as day, events from daily order by day"),
        vec!["day,events", "2024-01-01,3", "2024-01-02,2", "2024-01-03,1"]
    );
    // A plain run builds the current period and the lookback (one day before it); bad input
    // is refused.
    let out = p.ok(&["run"]);
    assert!(out.contains("[2 batches, 0 rows"), "{out}");
    let out = p.fails(&["run", "--event-time-start", "yesterday"], 2);
    assert!(out.contains("is not a time"), "{out}");
    // A batch must return rows of its own period only; even the first writes nothing else.
    p.write(
        "models/odd.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='day', batch_size='day') }}\nselect cast('2030-01-01' as timestamp) as day, 1 as n",
    );
    let out = p.fails(
        &[
            "run",
            "-s",
            "odd",
            "--event-time-start",
            "2024-01-01",
            "--event-time-end",
            "2024-01-02",
        ],
        1,
    );
    assert!(
        out.contains("returned rows whose `day` is outside it"),
        "{out}"
    );
    p.fails(&["show", "--inline", "select * from odd"], 2);
}

#[test]
fn two_runs_on_one_target_take_turns() {
    let p = TestProject::with_files(&[(
        "models/big.sql",
        "{{ config(materialized='table') }}select value as v, repeat('x', 100) as pad from generate_series(1, 4000000)",
    )]);
    p.ok(&["run"]);
    let mut first = p
        .std_command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the first run holds the lock (its description is in the lock file).
    let lock = p.path().join(".strata/dev/metadata.sqlite.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A second writer that will not wait is refused, naming the first...
    let out = p.fails(&["run", "--lock-timeout", "0"], 2);
    assert!(
        out.contains("the target is busy: `strata run` (pid"),
        "{out}"
    );
    // ...one that waits runs after it.
    let out = p.ok(&["run", "--lock-timeout", "120"]);
    assert!(
        first.try_wait().expect("wait").is_some(),
        "ran while the first was running"
    );
    assert!(out.contains("OK created sql table model main.big"), "{out}");
    assert!(first.wait().expect("reap").success());
    assert_eq!(
        p.query("select count(*) as n from big"),
        vec!["n", "4000000"]
    );
}
