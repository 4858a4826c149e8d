//! Hooks (`pre-hook`, `post-hook`, `on-run-start`, `on-run-end`) run their SQL, writes
//! included; `grants` are recorded; config keys without effect are named.

use crate::project::TestProject;

const AUDIT: &str =
    "{{ config(materialized='table') }}select 0 as n, cast('start' as varchar) as what";

fn hooked() -> TestProject {
    let p = TestProject::with_files(&[
        ("models/audit.sql", AUDIT),
        (
            "models/facts.sql",
            "-- depends_on: {{ ref('audit') }}\n\
             {{ config(materialized='table', partition_by=['day'],\n\
                pre_hook=\"insert into main.audit select count(*), 'pre ' || '{{ this.identifier }}' from main.audit\",\n\
                post_hook=[\"delete from {{ this }} where amount < 0\",\n\
                           {'sql': \"update {{ this }} set amount = amount * 10 where id = 1\", 'transaction': false},\n\
                           \"merge into {{ this }} as t using (select 3 as id, 70 as amount, 2 as day) as s on t.id = s.id \
                             when matched then update set amount = s.amount \
                             when not matched then insert (id, amount, day) values (s.id, s.amount, s.day)\",\n\
                           \"insert into {{ this }} (day, id, amount) values (2, 9, 0)\",\n\
                           \"delete from {{ this }} where id in (select 9 as id)\"]) }}\n\
             select * from (values (1, 5, 1), (2, -3, 1), (3, 7, 2)) as t(id, amount, day)",
        ),
    ]);
    p.write(
        "strata.yml",
        "name: t\nprofile: t\n\
         models:\n  t:\n    +post-hook: \"insert into main.audit select count(*), 'project post ' || '{{ this.identifier }}' from main.audit\"\n\
         on-run-start: [\"select 1\"]\n\
         on-run-end:\n  - \"insert into main.audit select count(*), 'end ' || cast({{ results | length }} as varchar) || ' ' || '{{ schemas | join(',') }}' from main.audit\"\n",
    );
    p
}

#[test]
fn model_and_run_hooks_run_their_sql_in_order() {
    let p = hooked();
    let out = p.ok(&["run"]);
    assert!(out.contains("1 of 1 OK hook: t-on-run-start-0"), "{out}");
    assert!(out.contains("1 of 1 OK hook: t-on-run-end-0"), "{out}");
    assert!(out.contains("PASS=2"), "{out}");
    // delete, update, merge, insert then a delete with a subquery: each ran on the table.
    assert_eq!(
        p.query("select id, amount, day from facts order by id"),
        vec!["id,amount,day", "1,50,1", "3,70,2"]
    );
    // The table kept its partitions through the hooks' writes.
    assert!(p.path().join(".strata/dev/main/facts/day=1").is_dir());
    assert!(p.path().join(".strata/dev/main/facts/day=2").is_dir());
    // Project hooks before the model's; the run's end sees the results and schemas.
    assert_eq!(
        p.query("select what from audit order by n"),
        vec![
            "what",
            "start",
            "project post audit",
            "pre facts",
            "project post facts",
            "end 2 main"
        ]
    );
    // Each hook's write is one version of the table, named after the model in its history.
    let history = p.ok(&["history", "facts", "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&history).expect("json");
    assert_eq!(versions.as_array().map(Vec::len), Some(6), "{history}");
}

#[test]
fn failing_hooks_fail_their_model_or_the_run() {
    let p = TestProject::with_files(&[
        (
            "models/a.sql",
            "{{ config(materialized='table', pre_hook='delete from main.nowhere') }}select 1 as x",
        ),
        (
            "models/b.sql",
            "{{ config(materialized='table', post_hook='grant select on {{ this }} to reporter') }}select 1 as x",
        ),
        ("models/c.sql", "select * from {{ ref('a') }}"),
    ]);
    let out = p.fails(&["run"], 1);
    assert!(out.contains("pre-hook 1 failed"), "{out}");
    assert!(
        out.contains("`main.nowhere` is not a table of this target"),
        "{out}"
    );
    assert!(
        out.contains("post-hook 1 failed (the model was built)"),
        "{out}"
    );
    assert!(out.contains("grants go in the `grants:` config"), "{out}");
    assert!(out.contains("SKIP relation main.c"), "{out}");
    assert!(!p.path().join(".strata/dev/main/a").exists());

    // A failed on-run-start runs nothing, and the run fails.
    p.write(
        "models/a.sql",
        "{{ config(materialized='table') }}select 1 as x",
    );
    p.write("models/b.sql", "select 2 as x");
    p.write(
        "strata.yml",
        "name: t\nprofile: t\non-run-start: \"select * from no_such_table\"\n",
    );
    let out = p.fails(&["run"], 1);
    assert!(out.contains("ERROR hook: t-on-run-start-0"), "{out}");
    assert!(out.contains("no_such_table"), "{out}");
    assert!(out.contains("SKIP=3"), "{out}");
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).expect("json");
    assert_eq!(
        results["results"][0]["message"],
        "skipped: an on-run-start hook failed"
    );

    // Hooks that are not SQL are refused when the project loads, naming the file.
    p.write(
        "strata.yml",
        "name: t\nprofile: t\non-run-end: {transaction: true}\n",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("strata.yml"), "{out}");
    assert!(out.contains("needs `sql:`"), "{out}");
}

#[test]
fn grants_are_recorded_and_unknown_configs_named() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='table', grants={'select': ['reporter', 'bi']}, transient=true, sort='id') }}select 1 as id",
    )]);
    let out = p.strata(&["run"]).output().expect("run");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("models/m.sql: config `transient` (model `m`) is not a config Strata knows and is ignored"),
        "{stderr}"
    );
    assert!(stderr.contains("config `sort`"), "{stderr}");
    assert_eq!(stderr.matches("config `transient`").count(), 1, "{stderr}");
    let meta = strata_meta::MetaStore::open(&p.path().join(".strata/dev/metadata.sqlite"))
        .expect("catalog");
    assert_eq!(
        meta.grants("strata", "main", "m").expect("grants"),
        vec![
            ("select".to_string(), "bi".to_string()),
            ("select".to_string(), "reporter".to_string())
        ]
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    assert_eq!(
        manifest["nodes"]["model.t.m"]["config"]["grants"]["select"],
        serde_json::json!(["reporter", "bi"])
    );
    // Grants the config no longer lists are revoked at the next build.
    p.write(
        "models/m.sql",
        "{{ config(materialized='table') }}select 1 as id",
    );
    p.ok(&["run"]);
    drop(meta);
    let meta = strata_meta::MetaStore::open(&p.path().join(".strata/dev/metadata.sqlite"))
        .expect("catalog");
    assert!(
        meta.grants("strata", "main", "m")
            .expect("grants")
            .is_empty()
    );
    // A bad value is refused at load.
    p.write(
        "models/m.sql",
        "{{ config(materialized='table', grants=['reporter']) }}select 1 as id",
    );
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("`grants` must map privileges to roles"),
        "{out}"
    );
}
