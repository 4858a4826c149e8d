//! `strata ingest`: sources with an `ingest:` mapping landed in bronze Delta tables, each new
//! file exactly once.

use crate::project::TestProject;

const SOURCES: &str = "version: 2
sources:
  - name: app
    ingest: {type: files}
    tables:
      - name: events
        ingest: {path: \"data/events/*.ndjson*\"}
      - name: prices
        ingest: {path: data/prices.csv, write: replace}
";

fn project() -> TestProject {
    TestProject::with_files(&[
        ("models/sources.yml", SOURCES),
        (
            "data/events/2026-01-01.ndjson",
            "{\"id\": 1, \"kind\": \"signup\"}\n{\"id\": 2, \"kind\": \"login\"}\n",
        ),
        ("data/prices.csv", "sku,cents\na,100\nb,250\n"),
        (
            "models/event_counts.sql",
            "select kind, count(*) as n from {{ source('app', 'events') }} group by kind",
        ),
    ])
}

#[test]
fn files_land_in_bronze_once_each_and_models_read_them() {
    let p = project();
    let out = p.ok(&["ingest"]);
    assert!(
        out.contains("OK ingest app.events into bronze.events: 2 rows from 1 file"),
        "{out}"
    );
    assert!(
        out.contains("OK ingest app.prices into bronze.prices: 2 rows from 1 file, table replaced"),
        "{out}"
    );
    assert!(
        out.contains("LOADED=2 UP-TO-DATE=0 ERROR=0 TOTAL=2"),
        "{out}"
    );
    // The load columns.
    assert_eq!(
        p.query("select id, kind, _strata_source, _strata_batch_id is not null as b, _strata_loaded_at is not null as t from bronze.events order by id"),
        vec![
            "id,kind,_strata_source,b,t",
            "1,signup,data/events/2026-01-01.ndjson,true,true",
            "2,login,data/events/2026-01-01.ndjson,true,true",
        ]
    );
    // Nothing new: nothing loaded, nothing written.
    let out = p.ok(&["ingest", "-s", "source:app.events"]);
    assert!(out.contains("up to date, no new files"), "{out}");
    // A new file (gzip-compressed, with a new column) is loaded alone.
    let plain = p.path().join("data/events/2026-01-02.ndjson");
    std::fs::write(
        &plain,
        "{\"id\": 3, \"kind\": \"login\", \"device\": \"ios\"}\n",
    )
    .expect("write");
    let status = std::process::Command::new("gzip")
        .arg(&plain)
        .status()
        .expect("gzip");
    assert!(status.success());
    let out = p.ok(&["ingest", "-s", "source:app.events"]);
    assert!(out.contains("1 row from 1 file"), "{out}");
    assert_eq!(
        p.query("select count(*) as n, count(device) as d from bronze.events"),
        vec!["n,d", "3,1"]
    );
    // Models read bronze through source().
    p.ok(&["run"]);
    assert_eq!(
        p.query("select kind, n from event_counts order by kind"),
        vec!["kind,n", "login,2", "signup,1"]
    );
    // replace reloads the whole file each time.
    std::fs::write(p.path().join("data/prices.csv"), "sku,cents\na,120\n").expect("write");
    p.ok(&["ingest", "-s", "source:app.prices"]);
    assert_eq!(
        p.query("select sku, cents from bronze.prices"),
        vec!["sku,cents", "a,120"]
    );
    // --full-refresh loads every file again, replacing the table: still each row once.
    p.ok(&["ingest", "--full-refresh", "-s", "source:app.events"]);
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        vec!["n", "3"]
    );
    p.ok(&["ingest", "-s", "source:app.events"]);
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        vec!["n", "3"]
    );
}

#[test]
fn a_bad_file_fails_its_table_only_and_writes_nothing() {
    let p = project();
    p.ok(&["ingest"]);
    std::fs::write(
        p.path().join("data/events/2026-01-03.ndjson"),
        "{\"id\": 4, \"kind\": \"login\"}\n{not json\n",
    )
    .expect("write");
    let out = p.fails(&["ingest"], 1);
    assert!(out.contains("ERROR ingest app.events"), "{out}");
    assert!(out.contains("2026-01-03.ndjson"), "{out}");
    assert!(out.contains("OK ingest app.prices"), "{out}");
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        vec!["n", "2"]
    );
    // Fixed, it is loaded once.
    std::fs::write(
        p.path().join("data/events/2026-01-03.ndjson"),
        "{\"id\": 4, \"kind\": \"login\"}\n",
    )
    .expect("write");
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        vec!["n", "3"]
    );
}

#[test]
fn ingest_settings_are_checked_before_anything_loads() {
    let p = project();
    p.remove("models/event_counts.sql");
    for (ingest, expected) in [
        ("{pth: x.csv}", "`pth` is not a key of files ingestion"),
        (
            "{path: x.csv, write: upsert}",
            "`write: upsert` is not a write mode",
        ),
        (
            "{path: x.csv, format: xml}",
            "`format: xml` is not a file format",
        ),
    ] {
        p.write(
            "models/sources.yml",
            &format!("version: 2\nsources:\n  - name: app\n    ingest: {{type: files}}\n    tables:\n      - name: bad\n        ingest: {ingest}\n"),
        );
        let err = p.fails(&["ingest"], 2);
        assert!(err.contains(expected), "{ingest}: {err}");
        assert!(
            err.contains("models/sources.yml: source `app.bad`"),
            "{err}"
        );
    }
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: shop\n    ingest: {type: postgres, url: \"{{ env_var('NO_SUCH_URL', 'x') }}\"}\n    tables:\n      - name: orders\n",
    );
    let err = p.fails(&["ingest"], 2);
    assert!(
        err.contains("`type: postgres` ingestion is not built yet"),
        "{err}"
    );
    assert!(!p.path().join(".strata/dev/bronze").exists());
}

#[test]
fn a_load_killed_at_any_moment_is_in_bronze_exactly_once() {
    let p = project();
    p.remove("models/event_counts.sql");
    p.ok(&["ingest", "-s", "source:app.events"]);
    // A load that recorded its files and died before its commit (as a killed process leaves
    // it): the next run loads those files, once.
    std::fs::write(
        p.path().join("data/events/2026-01-05.ndjson"),
        "{\"id\": 5, \"kind\": \"login\"}\n",
    )
    .expect("write");
    let meta = strata_meta::MetaStore::open(&p.path().join(".strata/dev/metadata.sqlite"))
        .expect("catalog");
    let len = std::fs::metadata(p.path().join("data/events/2026-01-05.ndjson"))
        .expect("stat")
        .len();
    meta.record_ingest_load(
        "source.t.app.events",
        2,
        false,
        &[strata_meta::IngestedFile {
            path: "data/events/2026-01-05.ndjson".into(),
            size: len,
            modified: "whatever".into(),
        }],
        "2026-01-05T00:00:00Z",
    )
    .expect("pending load");
    drop(meta);
    p.ok(&["ingest", "-s", "source:app.events"]);
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        vec!["n", "3"]
    );
    // SIGKILL in the middle of a large load, then again: every row exactly once.
    let mut csv = String::from("id,kind\n");
    for i in 0..400_000 {
        csv.push_str(&format!("{i},k{}\n", i % 7));
    }
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: big\n        ingest: {path: \"data/big/*.csv\"}\n",
    );
    std::fs::create_dir_all(p.path().join("data/big")).expect("mkdir");
    std::fs::write(p.path().join("data/big/part-1.csv"), &csv).expect("write");
    for delay_ms in [50, 150, 400] {
        let mut child = p.std_command(&["ingest"]).spawn().expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select count(*) as n, count(distinct id) as d, sum(id) as s from bronze.big"),
        vec!["n,d,s", "400000,400000,79999800000"]
    );
    let out = p.ok(&["ingest"]);
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn build_ingest_goes_from_files_to_models_and_sources_shows_the_loads() {
    let p = project();
    p.write(
        "models/sources.yml",
        &format!(
            "{}  - name: raw\n    tables:\n      - name: orders\n        external_location: data/prices.csv\n",
            SOURCES.replace(
                "    ingest: {type: files}\n",
                "    ingest: {type: files}\n    freshness: {warn_after: {count: 1, period: hour}, error_after: {count: 2, period: day}}\n",
            )
        ),
    );
    let listed = p.ok(&["sources"]);
    assert!(listed.contains("app.events"), "{listed}");
    assert!(listed.contains("never"), "{listed}");
    let out = p.ok(&["build", "--ingest"]);
    assert!(out.contains("OK ingest app.events"), "{out}");
    assert!(out.contains("LOADED=2"), "{out}");
    assert!(out.contains("PASS=1"), "{out}");
    assert_eq!(
        p.query("select kind, n from event_counts order by kind"),
        vec!["kind,n", "login,1", "signup,1"]
    );
    let json = p.ok(&["sources", "--json", "-s", "source:app.events"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(row["kind"], "files");
    assert_eq!(row["relation"], "bronze.events");
    assert_eq!(row["last_load_rows"], 2);
    assert_eq!(row["freshness"], "pass");
    let listed = p.ok(&["sources"]);
    assert!(listed.contains("external"), "{listed}");
    // Freshness of an ingested table reads its load time.
    let out = p.ok(&["source", "freshness", "-s", "source:app.events"]);
    assert!(out.contains("PASS freshness of app.events"), "{out}");
    // A failing load stops the build before any model.
    std::fs::write(p.path().join("data/events/bad.ndjson"), "{oops\n").expect("write");
    let out = p.fails(&["build", "--ingest"], 1);
    assert!(out.contains("nothing was built"), "{out}");
    assert!(!out.contains("Running"), "{out}");
}

#[test]
fn merged_tables_keep_one_row_per_key_the_latest() {
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: pos\n    ingest: {type: files}\n    tables:\n      - name: stock\n        ingest: {path: \"data/stock/*.csv\", write: merge, primary_key: [store, sku]}\n",
        ),
        (
            "data/stock/day-1.csv",
            "store,sku,qty\n1,a,10\n1,b,20\n2,a,5\n",
        ),
    ]);
    p.ok(&["ingest"]);
    std::fs::write(
        p.path().join("data/stock/day-2.csv"),
        "store,sku,qty\n1,a,7\n2,c,1\n",
    )
    .expect("write");
    let out = p.ok(&["ingest"]);
    assert!(out.contains("2 rows from 1 file"), "{out}");
    let rows = vec!["store,sku,qty", "1,a,7", "1,b,20", "2,a,5", "2,c,1"];
    let all = "select store, sku, qty from bronze.stock order by store, sku";
    assert_eq!(p.query(all), rows);
    // Replaced in full, the last file still wins for each key.
    p.ok(&["ingest", "--full-refresh"]);
    assert_eq!(p.query(all), rows);
    // A key that is not a column is named.
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: pos\n    ingest: {type: files}\n    tables:\n      - name: stock\n        ingest: {path: \"data/stock/*.csv\", write: merge, primary_key: shop}\n",
    );
    std::fs::write(
        p.path().join("data/stock/day-3.csv"),
        "store,sku,qty\n3,z,1\n",
    )
    .expect("write");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains("the primary key column `shop` is not in the loaded rows"),
        "{out}"
    );
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: pos\n    ingest: {type: files}\n    tables:\n      - name: stock\n        ingest: {path: \"data/stock/*.csv\", write: merge}\n",
    );
    let err = p.fails(&["ingest"], 2);
    assert!(err.contains("`write: merge` needs `primary_key`"), "{err}");
}
