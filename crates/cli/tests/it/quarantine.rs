//! Row quarantine: failing rows set aside in `<schema>_quarantine.<model>` while the rest are
//! written, `strata quarantine list|retry`, a kill mid-build, and wrong checks.

use crate::project::TestProject;

const CHECKS: &str = "quarantine=[{'not_null': 'id'}, {'accepted_values': {'column': 'status', 'values': ['placed', 'shipped']}}, {'expression': 'amount >= 0'}]";

fn orders_model(materialized: &str, extra: &str) -> String {
    format!(
        "{{{{ config(materialized='{materialized}', {extra}{CHECKS}) }}}}\nselect * from {{{{ ref('raw') }}}}"
    )
}

#[test]
fn bad_rows_are_set_aside_and_the_good_rows_written() {
    let p = TestProject::with_files(&[
        (
            "seeds/raw.csv",
            "id,status,amount\n1,placed,10\n2,shipped,-5\n,placed,3\n4,lost,7\n5,placed,\n6,shipped,1\n7,lost,-1\n",
        ),
        ("models/orders.sql", &orders_model("table", "")),
    ]);
    let out = p.ok(&["build"]);
    assert!(out.contains("[SELECT 3, 4 quarantined in"), "{out}");
    // Exactly the good rows (a NULL amount passes `amount >= 0`, as in dbt's tests)...
    assert_eq!(
        p.query("select id, status, amount from orders order by id"),
        [
            "id,status,amount",
            "1,placed,10",
            "5,placed,",
            "6,shipped,1"
        ]
    );
    // ...and exactly the bad ones, each with every check it failed and the run.
    assert_eq!(
        p.query("select id, strata_failed_checks from main_quarantine.orders order by id"),
        [
            "id,strata_failed_checks",
            "2,expression(amount >= 0)",
            "4,accepted_values(status)",
            "7,\"accepted_values(status), expression(amount >= 0)\"",
            ",not_null(id)"
        ]
    );
    let runs = p.query("select count(distinct strata_run_id) as n from main_quarantine.orders");
    assert_eq!(runs, ["n", "1"]);

    let list = p.ok(&["quarantine", "list"]);
    assert!(
        list.lines().any(|l| l.starts_with("orders")
            && l.contains("accepted_values(status)")
            && l.contains(" 1 ")),
        "{list}"
    );
    let list = p.ok(&["quarantine", "list", "orders"]);
    assert!(
        list.contains("| strata_failed_checks"),
        "the rows are shown: {list}"
    );

    // A table model's quarantine holds its current build's rows: a rebuild replaces them.
    p.ok(&["build"]);
    assert_eq!(
        p.query("select count(*) as n from main_quarantine.orders"),
        ["n", "4"]
    );

    // A quarantine commit whose run never committed the model (as a process killed between
    // the two commits leaves it) is skipped by listings and undone by the next build.
    p.write(
        "models/ghost.sql",
        "{{ config(materialized='table', post_hook=\"insert into main_quarantine.orders (id, status, amount, strata_failed_checks, strata_run_id, strata_quarantined_at) select 99, 'x', 1, 'ghost', '{{ invocation_id }}', now()\") }}\nselect 1 as x",
    );
    let listed = p.ok(&["quarantine", "list"]);
    p.ok(&["run", "-s", "ghost"]);
    assert_eq!(
        p.query("select count(*) as n from main_quarantine.orders"),
        ["n", "5"]
    );
    assert_eq!(p.ok(&["quarantine", "list"]), listed);
    std::fs::remove_file(p.path().join("models/ghost.sql")).expect("rm");
    p.ok(&["build", "-s", "orders"]);
    assert_eq!(
        p.query("select count(*) as n, max(id) as m from main_quarantine.orders"),
        ["n,m", "4,7"]
    );

    // After a fix to the checks, retry takes back the rows that now pass.
    p.write(
        "models/orders.sql",
        &orders_model("table", "").replace("'shipped']", "'shipped', 'lost']"),
    );
    let out = p.ok(&["quarantine", "retry", "orders"]);
    assert!(
        out.contains("1 row now pass") && out.contains("3 still fail"),
        "{out}"
    );
    assert_eq!(
        p.query("select id from orders order by id"),
        ["id", "1", "4", "5", "6"]
    );
    assert_eq!(
        p.query("select id from main_quarantine.orders order by id"),
        ["id", "2", "7", "\"\""]
    );
    let out = p.ok(&["quarantine", "retry", "orders"]);
    assert!(out.contains("0 rows now pass"), "{out}");
    assert_eq!(p.query("select count(*) as n from orders"), ["n", "4"]);
}

#[test]
fn an_incremental_model_quarantines_each_runs_new_rows() {
    let model = format!(
        "{{{{ config(materialized='incremental', unique_key='id', {CHECKS}) }}}}\nselect * from {{{{ ref('raw') }}}}\n{{% if is_incremental() %}}where batch > (select max(batch) from {{{{ this }}}}){{% endif %}}"
    );
    let p = TestProject::with_files(&[
        (
            "seeds/raw.csv",
            "batch,id,status,amount\n1,1,placed,10\n1,2,lost,5\n",
        ),
        ("models/orders.sql", &model),
    ]);
    let out = p.ok(&["build"]);
    assert!(out.contains("1 quarantined"), "{out}");
    p.write(
        "seeds/raw.csv",
        "batch,id,status,amount\n1,1,placed,10\n1,2,lost,5\n2,3,placed,-2\n2,4,shipped,4\n",
    );
    let out = p.ok(&["build"]);
    assert!(out.contains("1 quarantined"), "{out}");
    assert_eq!(
        p.query("select id from orders order by id"),
        ["id", "1", "4"]
    );
    // An incremental model's quarantine keeps each run's rows.
    assert_eq!(
        p.query("select id from main_quarantine.orders order by id"),
        ["id", "2", "3"]
    );
    // Retried rows are merged by the model's key.
    p.write(
        "models/orders.sql",
        &model.replace("'shipped']", "'shipped', 'lost']"),
    );
    p.ok(&["quarantine", "retry", "orders"]);
    assert_eq!(
        p.query("select id, status from orders order by id"),
        ["id,status", "1,placed", "2,lost", "4,shipped"]
    );
    assert_eq!(
        p.query("select id from main_quarantine.orders"),
        ["id", "3"]
    );
}

#[test]
fn a_kill_during_a_quarantining_build_leaves_both_tables_as_they_were() {
    let model = |n: u64| {
        format!(
            "{{{{ config(materialized='table', quarantine=[{{'not_null': 'v'}}]) }}}}\nselect value as id, case when value % 100 = 0 then null else value end as v, repeat('x', 100) as pad from generate_series(1, {n})"
        )
    };
    let p = TestProject::with_files(&[("models/facts.sql", &model(1000))]);
    p.ok(&["run"]);
    let before = (
        p.query("select count(*) as n, sum(id) as s from facts"),
        p.ok(&["quarantine", "list"]),
    );
    assert_eq!(before.0, ["n,s", "990,495000"]);
    p.write("models/facts.sql", &model(2_000_000));
    for delay_ms in [300u64, 900, 2000] {
        p.kill_after(&["run"], delay_ms);
        assert_eq!(
            p.query("select count(*) as n, sum(id) as s from facts"),
            before.0,
            "killed after {delay_ms} ms"
        );
        assert_eq!(
            p.ok(&["quarantine", "list"]),
            before.1,
            "killed after {delay_ms} ms"
        );
    }
    // Killed as the quarantined rows are written, at the end of the query: the quarantine's
    // commit may be in, the model's is not.
    p.kill_while_writing(&["run"], ".strata/dev/main_quarantine/facts");
    assert_eq!(
        p.query("select count(*) as n, sum(id) as s from facts"),
        before.0
    );
    assert_eq!(p.ok(&["quarantine", "list"]), before.1);

    // The next build completes: every row written or set aside, exactly once.
    p.ok(&["run"]);
    assert_eq!(p.query("select count(*) as n from facts"), ["n", "1980000"]);
    assert_eq!(
        p.query("select count(*) as n, count(distinct id) as ids from main_quarantine.facts"),
        ["n,ids", "20000,20000"]
    );
}

#[test]
fn wrong_quarantine_checks_are_named_and_nothing_is_written() {
    let p = TestProject::with_files(&[
        ("seeds/raw.csv", "id,amount\n1,10\n"),
        (
            "models/orders.sql",
            "{{ config(\n    materialized='table',\n    quarantine=[{'not_nul': 'id'}],\n) }}\nselect * from {{ ref('raw') }}",
        ),
    ]);
    let out = p.fails(&["build"], 2);
    assert!(
        out.contains("models/orders.sql:3")
            && out.contains("`not_nul` is not a quarantine check")
            && out.contains("did you mean `not_null`"),
        "{out}"
    );
    p.write(
        "models/orders.sql",
        "{{ config(materialized='view', quarantine=[{'not_null': 'id'}]) }}\nselect * from {{ ref('raw') }}",
    );
    let out = p.fails(&["build"], 2);
    assert!(
        out.contains("works for table and incremental models, not view"),
        "{out}"
    );

    // A column the query does not return: the model fails, naming it; nothing is written.
    p.write(
        "models/orders.sql",
        "{{ config(materialized='table', quarantine=[{'not_null': 'amout'}]) }}\nselect * from {{ ref('raw') }}",
    );
    let out = p.fails(&["build"], 1);
    assert!(
        out.contains("names column `amout`") && out.contains("did you mean `amount`"),
        "{out}"
    );
    let out = p.fails(&["show", "--inline", "select * from orders"], 2);
    assert!(out.contains("orders"), "{out}");
    assert!(!p.path().join(".strata/dev/main_quarantine").exists());
}

#[test]
fn ingestion_sets_bad_rows_aside_in_bronze_quarantine() {
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: events\n        ingest:\n          path: \"data/*.ndjson\"\n          quarantine: [{not_null: id}, {accepted_values: {column: kind, values: [signup, login]}}]\n",
        ),
        (
            "data/1.ndjson",
            "{\"id\": 1, \"kind\": \"signup\"}\n{\"id\": null, \"kind\": \"login\"}\n{\"id\": 3, \"kind\": \"spam\"}\n",
        ),
    ]);
    let out = p.ok(&["ingest"]);
    assert!(
        out.contains("into bronze.events: 1 row from 1 file, 2 quarantined"),
        "{out}"
    );
    assert_eq!(p.query("select id from bronze.events"), ["id", "1"]);
    assert_eq!(
        p.query("select kind, strata_failed_checks from bronze_quarantine.events order by kind"),
        [
            "kind,strata_failed_checks",
            "login,not_null(id)",
            "spam,accepted_values(kind)"
        ]
    );
    // The next file's bad rows are added; the good ones appended.
    p.write(
        "data/2.ndjson",
        "{\"id\": 4, \"kind\": \"login\"}\n{\"id\": 5, \"kind\": \"bot\"}\n",
    );
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select id from bronze.events order by id"),
        ["id", "1", "4"]
    );
    assert_eq!(
        p.query("select count(*) as n from bronze_quarantine.events"),
        ["n", "3"]
    );

    // A check naming a column the files lack stops the load, naming it.
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: events\n        ingest:\n          path: \"data/*.ndjson\"\n          quarantine: [{not_null: idd}]\n",
    );
    p.write("data/3.ndjson", "{\"id\": 6, \"kind\": \"login\"}\n");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains("names column `idd`") && out.contains("did you mean `id`"),
        "{out}"
    );
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        ["n", "2"]
    );
    // A wrong check is named before anything loads.
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: events\n        ingest:\n          path: \"data/*.ndjson\"\n          quarantine: [{not_nul: id}]\n",
    );
    let out = p.fails(&["ingest"], 2);
    assert!(out.contains("did you mean `not_null`"), "{out}");
}
