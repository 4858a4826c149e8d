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

#[test]
fn defer_reads_a_state_whose_catalog_is_in_postgres() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let db = server.database("shared_state");
    let p = TestProject::with_files(&[
        (
            "profiles.yml",
            &format!(
                "t:
  target: dev
  outputs:
    dev: {{type: strata, schema: main}}
    prod:
      type: strata
      schema: main
      lake: .strata/prod
      metadata: postgresql://postgres@127.0.0.1:{}/{}?sslmode=disable
",
                server.port, db.name
            ),
        ),
        (
            "models/base.sql",
            "{{ config(materialized='table') }}select 41 as n",
        ),
        (
            "models/top.sql",
            "{{ config(materialized='table') }}select n + 1 as n from {{ ref('base') }}",
        ),
    ]);
    p.ok_with(&["--target", "prod", "run"], ENV);
    // The manifest says where prod's catalog is: the shared store, not a file.
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let env = &manifest["metadata"]["env"];
    assert!(
        env["STRATA_METADATA"]
            .as_str()
            .is_some_and(|m| m.starts_with("postgresql://"))
            && env["STRATA_METADATA_SCHEMA"] == "strata_prod",
        "{env}"
    );
    std::fs::create_dir_all(p.path().join("prod-state")).expect("mkdir");
    std::fs::copy(
        p.path().join("target/manifest.json"),
        p.path().join("prod-state/manifest.json"),
    )
    .expect("copy");
    // dev builds only `top`, reading `base` from prod's tables through prod's shared catalog.
    let out = p.ok_with(
        &["run", "-s", "top", "--defer", "--state", "prod-state"],
        ENV,
    );
    assert!(out.contains("PASS=1"), "{out}");
    let shown = p.ok_with(&["show", "--inline", "select n from top"], ENV);
    assert!(shown.contains("42"), "{shown}");
}
