//! A metadata store in PostgreSQL (`metadata: postgres://…`), shared by two copies of a
//! project (two machines working on one target, with one lake): one writer at a time across
//! both (an advisory lock), run history, the catalog and users seen by both, and a password
//! in the url refused.

use crate::pg_server::{self, PASSWORD};
use crate::project::TestProject;

const ENV: &[(&str, &str)] = &[("PGPASSWORD", PASSWORD)];

fn machine(port: u16, database: &str, lake: &std::path::Path) -> TestProject {
    TestProject::with_files(&[
        (
            "profiles.yml",
            &format!(
                "t:
  target: dev
  outputs:
    dev:
      type: strata
      schema: main
      lake: {}
      metadata: postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable
",
                lake.display()
            ),
        ),
        (
            "models/big.sql",
            "{{ config(materialized='table') }}select value as v, repeat('x', 100) as pad from generate_series(1, 4000000)",
        ),
        (
            "models/small.sql",
            "select count(*) as n from {{ ref('big') }}",
        ),
    ])
}

#[test]
fn two_machines_share_a_target_through_a_postgres_metadata_store() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("shared_meta");
    let lake = tempfile::tempdir().expect("lake");
    let a = machine(server.port, &db.name, lake.path());
    let b = machine(server.port, &db.name, lake.path());

    let out = a.ok_with(&["run"], ENV);
    assert!(out.contains("PASS=2"), "{out}");
    // The store is in PostgreSQL, in the target's own schema.
    assert_eq!(
        db.sql("select name || ' ' || kind from strata_dev.relations order by name"),
        "big table\nsmall view"
    );

    // While one machine writes, the other waits for it, or gives up naming it.
    let mut first = a
        .std_command(&["run"])
        .env("PGPASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.sql(&format!(
        "select count(*) from strata_dev.locks where holder like '%pid {} %'",
        first.id()
    )) != "1"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = b.fails_with(&["run", "--lock-timeout", "0"], ENV, 2);
    assert!(
        out.contains("the target is busy: `strata run` (pid")
            && out.contains(&format!("pid {} on", first.id())),
        "{out}"
    );
    let out = b.ok_with(&["run", "--lock-timeout", "120"], ENV);
    assert!(
        first.try_wait().expect("wait").is_some(),
        "ran while the first was running"
    );
    assert!(first.wait().expect("reap").success());
    assert!(out.contains("PASS=2"), "{out}");

    // Both see one history and one catalog.
    assert_eq!(
        db.sql("select count(*) || ' ' || string_agg(distinct status, ',') from strata_dev.runs"),
        "3 success"
    );
    let shown = b.ok_with(&["show", "--inline", "select n from small"], ENV);
    assert!(shown.contains("4000000"), "{shown}");

    // Users added on one machine log in on the other.
    let added = a
        .strata(&["users", "add", "ana", "--role", "bi_reader"])
        .env("PGPASSWORD", PASSWORD)
        .write_stdin("a-long-passphrase\n")
        .output()
        .expect("users add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let listed = b.ok_with(&["users", "list"], ENV);
    assert!(
        listed.contains("ana") && listed.contains("bi_reader"),
        "{listed}"
    );
}

#[test]
fn a_password_written_in_the_metadata_url_is_refused() {
    let p = TestProject::with_files(&[
        (
            "profiles.yml",
            "t:
  target: dev
  outputs:
    dev:
      type: strata
      metadata: postgresql://strata:hunter2@db.internal/meta
",
        ),
        ("models/a.sql", "select 1 as a"),
    ]);
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("the `metadata` url holds a password written in the file")
            && out.contains("PGPASSWORD"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}
