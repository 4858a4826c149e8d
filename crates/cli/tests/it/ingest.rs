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
    assert!(out.contains("up to date, nothing new"), "{out}");
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
    for (ingest, expected) in [
        (
            "{type: http, path: /x}",
            "http ingestion needs a `base_url`",
        ),
        (
            "{type: http, base_url: \"http://h\", auth: {token: x}}",
            "`auth` must be {bearer: ...}",
        ),
        (
            "{type: http, base_url: \"http://h\", paginate: {next: x}}",
            "`paginate` must be",
        ),
        (
            "{type: http, base_url: \"http://h\", paginate: {cursor_param: a}}",
            "needs `cursor_path`",
        ),
        (
            "{type: http, base_url: \"http://h\", incremental: {param: since}}",
            "`incremental` needs `param`",
        ),
        (
            "{type: http, base_url: \"http://h\", recrds: data}",
            "`recrds` is not a key of http ingestion — did you mean `records`?",
        ),
        ("{type: ftp}", "`type: ftp` is not a connector"),
        (
            "{type: files, path: x.csv, flatten: yes please}",
            "`flatten` must be true or false",
        ),
        (
            "{type: files, path: x.csv, partition_by_load_date: 1}",
            "`partition_by_load_date` must be true or false",
        ),
        (
            "{type: postgres, host: h, user: u, mode: sometimes}",
            "`mode: sometimes` is not a mode (full or incremental)",
        ),
        (
            "{type: postgres, host: h, user: u, mode: incremental}",
            "`mode: incremental` needs a `cursor`",
        ),
        (
            "{type: postgres, host: h, user: u, mode: incremental, cursor: c, write: replace}",
            "`mode: incremental` adds to the table",
        ),
        (
            "{type: postgres, host: h, user: u, parallel: 0}",
            "`parallel: 0` must be a number of connections from 1 to 64",
        ),
        (
            "{type: postgres, host: h, user: u, sslmode: sometimes}",
            "`sslmode=sometimes` is not an sslmode",
        ),
        (
            "{type: postgres, host: h, user: u, table: t, query: select 1}",
            "give `table` or `query`, not both",
        ),
        (
            "{type: postgres, host: h, user: u, password: hunter2}",
            "`password` is written in the file",
        ),
        (
            "{type: postgres, user: u}",
            "postgres ingestion needs a `url`",
        ),
    ] {
        p.write(
            "models/sources.yml",
            &format!("version: 2\nsources:\n  - name: api\n    tables:\n      - name: bad\n        ingest: {ingest}\n"),
        );
        let err = p.fails(&["ingest"], 2);
        assert!(err.contains(expected), "{ingest}: {err}");
    }
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: shop\n    ingest: {type: postgres, url: \"{{ env_var('NO_SUCH_URL', 'x') }}\"}\n    tables:\n      - name: orders\n",
    );
    let err = p.fails(&["ingest"], 2);
    assert!(
        err.contains("`url` is not a PostgreSQL url (postgresql://user@host:port/database)"),
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
        (
            &[strata_meta::IngestedFile {
                path: "data/events/2026-01-05.ndjson".into(),
                size: len,
                modified: "whatever".into(),
            }][..],
            None,
        ),
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

/// A JSON API on loopback for the tests: `/invoices` answers pages of two records by cursor
/// (`after`), filtered by `updated_since`, to `Authorization: Bearer secret-token` only; its
/// first answer is a 429 (Retry-After: 1) and its second a 500, as a busy API does.
struct Api {
    port: u16,
    invoices: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn api() -> Api {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let invoices: Vec<serde_json::Value> = (1..=5)
        .map(|i| serde_json::json!({"id": i, "amount": i * 10, "updated_at": format!("2026-01-0{i}T00:00:00Z"), "customer": {"name": format!("c{i}")}}))
        .collect();
    let invoices = std::sync::Arc::new(std::sync::Mutex::new(invoices));
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (data, count) = (invoices.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let n = count.fetch_add(1, Ordering::SeqCst);
            let target = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix(&format!("{k}=")))
                    .map(|v| v.replace("%3A", ":"))
            };
            let (status, extra, body) = if n == 0 {
                (
                    "429 Too Many Requests",
                    "Retry-After: 1\r\n",
                    "{}".to_string(),
                )
            } else if n == 1 {
                ("500 Internal Server Error", "", "oops".to_string())
            } else if auth != "Bearer secret-token" {
                (
                    "401 Unauthorized",
                    "",
                    "{\"error\": \"bad token\"}".to_string(),
                )
            } else if path != "/invoices" {
                ("404 Not Found", "", "{}".to_string())
            } else {
                let since = param("updated_since");
                let all: Vec<serde_json::Value> = data
                    .lock()
                    .expect("data")
                    .iter()
                    .filter(|r| {
                        since
                            .as_deref()
                            .is_none_or(|s| r["updated_at"].as_str().unwrap_or("") > s)
                    })
                    .cloned()
                    .collect();
                let start: usize = param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                let page: Vec<_> = all.iter().skip(start).take(2).cloned().collect();
                let next = (start + 2 < all.len()).then(|| (start + 2).to_string());
                (
                    "200 OK",
                    "",
                    serde_json::json!({"data": {"items": page, "next": next}}).to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Api {
        port,
        invoices,
        requests,
    }
}

#[test]
fn http_endpoints_land_page_by_page_retried_and_incremental() {
    let api = api();
    let p = TestProject::with_files(&[(
        "models/sources.yml",
        &format!(
            "version: 2
sources:
  - name: billing
    ingest: {{type: http, base_url: \"http://127.0.0.1:{}\", auth: {{bearer: \"{{{{ env_var('BILLING_TOKEN') }}}}\"}}}}
    tables:
      - name: invoices
        ingest:
          path: /invoices
          records: data.items
          paginate: {{cursor_param: after, cursor_path: data.next}}
          incremental: {{param: updated_since, cursor: updated_at}}
",
            api.port
        ),
    )]);
    let ingest = |token: &str| {
        let out = p
            .strata(&["ingest"])
            .env("BILLING_TOKEN", token)
            .output()
            .expect("ingest");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = ingest("secret-token");
    assert_eq!(code, Some(0), "{out}");
    // Retried: the 429 (after its Retry-After) and the 500.
    assert!(
        out.contains("429 Too Many Requests; trying again in 1.0 s"),
        "{out}"
    );
    assert!(
        out.contains("500 Internal Server Error; trying again"),
        "{out}"
    );
    assert!(
        out.contains("OK ingest billing.invoices into bronze.invoices: 5 rows"),
        "{out}"
    );
    assert!(!out.contains("secret-token"), "{out}");
    assert_eq!(
        p.query("select id, amount, customer['name'] as name from bronze.invoices order by id"),
        vec![
            "id,amount,name",
            "1,10,c1",
            "2,20,c2",
            "3,30,c3",
            "4,40,c4",
            "5,50,c5"
        ]
    );
    // Incremental: only what changed since the last load's greatest updated_at.
    api.invoices
        .lock()
        .expect("data")
        .push(serde_json::json!({"id": 6, "amount": 60, "updated_at": "2026-01-06T00:00:00Z"}));
    let before = api.requests.load(std::sync::atomic::Ordering::SeqCst);
    let (code, out) = ingest("secret-token");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 row"), "{out}");
    assert_eq!(
        api.requests.load(std::sync::atomic::Ordering::SeqCst) - before,
        1
    );
    assert_eq!(
        p.query("select count(*) as n from bronze.invoices"),
        vec!["n", "6"]
    );
    // A wrong token is named as the credentials' problem, never printed; nothing changes.
    let (code, out) = ingest("wrong-token");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("401 Unauthorized"), "{out}");
    assert!(out.contains("check the credentials"), "{out}");
    assert!(!out.contains("wrong-token"), "{out}");
    assert_eq!(
        p.query("select count(*) as n from bronze.invoices"),
        vec!["n", "6"]
    );
    // --full-refresh reads everything again and replaces the table.
    let out = p
        .strata(&["ingest", "--full-refresh"])
        .env("BILLING_TOKEN", "secret-token")
        .output()
        .expect("ingest");
    assert!(out.status.success());
    assert_eq!(
        p.query("select count(*) as n from bronze.invoices"),
        vec!["n", "6"]
    );
}

#[test]
fn columns_widen_safely_and_an_incompatible_change_writes_nothing() {
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: a\n    ingest: {type: files}\n    tables:\n      - name: t\n        ingest: {path: \"data/t/*.csv\"}\n",
        ),
        ("data/t/1.csv", "id,v\n1,2\n"),
    ]);
    p.ok(&["ingest"]);
    // Text where the table has integers: named with the file and both types; nothing written.
    std::fs::write(p.path().join("data/t/2.csv"), "id,v\nabc,2\n").expect("write");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains(
            "column `id` is VARCHAR in data/t/2.csv but BIGINT in the table (row 1: `abc` is not BIGINT); nothing was written"
        ),
        "{out}"
    );
    assert_eq!(
        p.query("select count(*) as n from bronze.t"),
        vec!["n", "1"]
    );
    std::fs::remove_file(p.path().join("data/t/2.csv")).expect("rm");
    // A double where the table has integers widens the column, old rows kept.
    std::fs::write(p.path().join("data/t/3.csv"), "id,v\n3,2.5\n").expect("write");
    p.ok(&["ingest"]);
    // An integer into the widened column is cast up.
    std::fs::write(p.path().join("data/t/4.csv"), "id,v\n4,7\n").expect("write");
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select id, v, arrow_typeof(v) as t from bronze.t order by id"),
        vec!["id,v,t", "1,2.0,Float64", "3,2.5,Float64", "4,7.0,Float64"]
    );
}

fn contract_sources(contract: &str) -> String {
    format!(
        "version: 2
sources:
  - name: shop
    ingest: {{type: files, contract: {contract}}}
    tables:
      - name: prices
        ingest: {{path: \"data/p/*.csv\"}}
"
    )
}

#[test]
fn contracts_fail_on_or_leave_out_what_does_not_fit() {
    let p = TestProject::with_files(&[
        ("models/sources.yml", &contract_sources("evolve")),
        ("data/p/1.csv", "sku,cents\na,100\nb,250\n"),
    ]);
    p.ok(&["ingest"]);
    // A value that does not fit: the file, the row and the column are named; nothing written.
    p.write("data/p/2.csv", "sku,cents\nc,300\nd,lots\ne,500\n");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains("column `cents` is VARCHAR in data/p/2.csv but BIGINT in the table (row 2: `lots` is not BIGINT)"),
        "{out}"
    );
    assert_eq!(
        p.query("select count(*) as n from bronze.prices"),
        vec!["n", "2"]
    );
    // discard_value: NULL in its place.
    p.write("models/sources.yml", &contract_sources("discard_value"));
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select sku, cents from bronze.prices order by sku"),
        vec!["sku,cents", "a,100", "b,250", "c,300", "d,", "e,500"]
    );
    // discard_row: rows with a value that does not fit, or a value in a new column, left out.
    p.write("models/sources.yml", &contract_sources("discard_row"));
    p.write("data/p/3.csv", "sku,cents,color\nf,x,\ng,700,\nh,800,red\n");
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select sku, cents from bronze.prices where sku > 'e' order by sku"),
        vec!["sku,cents", "g,700"]
    );
    assert_eq!(
        p.query("select count(*) as n from information_schema.columns where table_name = 'prices' and column_name = 'color'"),
        vec!["n", "0"]
    );
    // freeze: a new column fails the load.
    p.write("models/sources.yml", &contract_sources("freeze"));
    p.write("data/p/4.csv", "sku,cents,size\ni,900,L\n");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains("column `size` (VARCHAR) in data/p/4.csv is not in the table, and the source's contract is `freeze`"),
        "{out}"
    );
    // A contract that is not one is named before anything loads.
    p.write("models/sources.yml", &contract_sources("sometimes"));
    let out = p.fails(&["ingest"], 2);
    assert!(
        out.contains("`contract: sometimes` is not a contract"),
        "{out}"
    );
}

#[test]
fn a_table_partitioned_by_load_date_keeps_each_day_in_its_folder() {
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: events\n        ingest: {path: \"data/*.csv\", partition_by_load_date: true}\n",
        ),
        ("data/1.csv", "id\n1\n2\n"),
    ]);
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select count(*) as n, min(_strata_load_date = cast(_strata_loaded_at as date)) as same from bronze.events"),
        vec!["n,same", "2,true"]
    );
    let files = p.files_under(".strata/dev/bronze/events");
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("/_strata_load_date=")),
        "{files:?}"
    );
    // A later load adds to the table, partitioned the same way.
    p.write("data/2.csv", "id\n3\n");
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select count(*) as n from bronze.events"),
        vec!["n", "3"]
    );
}

#[test]
fn nested_json_is_kept_as_structs_or_flattened() {
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: kept\n        ingest: {path: data/o.ndjson}\n      - name: flat\n        ingest: {path: data/o.ndjson, flatten: true}\n",
        ),
        (
            "data/o.ndjson",
            "{\"id\": 1, \"customer\": {\"name\": \"Ada\", \"address\": {\"city\": \"Oslo\"}}, \"tags\": [\"a\", \"b\"]}\n",
        ),
    ]);
    p.ok(&["ingest"]);
    assert_eq!(
        p.query(
            "select customer['name'] as n, customer['address']['city'] as c, tags from bronze.kept"
        ),
        vec!["n,c,tags", "Ada,Oslo,\"[a, b]\""]
    );
    assert_eq!(
        p.query("select id, customer__name, customer__address__city, tags from bronze.flat"),
        vec![
            "id,customer__name,customer__address__city,tags",
            "1,Ada,Oslo,\"[a, b]\""
        ]
    );
}

#[test]
fn a_date_that_is_not_a_date_is_named_with_its_file_and_row() {
    let p = TestProject::with_files(&[
        ("models/sources.yml", &contract_sources("freeze")),
        ("data/p/1.csv", "sku,day\na,2024-01-05\n"),
    ]);
    p.ok(&["ingest"]);
    p.write("data/p/2.csv", "sku,day\nb,2024-02-01\nc,soon\n");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains("column `day` is VARCHAR in data/p/2.csv but DATE in the table (row 2: `soon` is not DATE) and the source's contract is `freeze`"),
        "{out}"
    );
    p.remove("data/p/2.csv");
    p.write("data/p/3.csv", "sku,day\nd,2024-02-01\ne,2024-02-30\n");
    let out = p.fails(&["ingest"], 1);
    assert!(
        out.contains("data/p/3.csv: Error while parsing value '2024-02-30' as type 'Date32' for column `day` at line 2"),
        "{out}"
    );
    assert_eq!(
        p.query("select count(*) as n from bronze.prices"),
        vec!["n", "1"]
    );
    // Under discard_row, that value's row is left out and the rest load.
    p.write("models/sources.yml", &contract_sources("discard_row"));
    p.ok(&["ingest"]);
    assert_eq!(
        p.query("select sku, day from bronze.prices order by sku"),
        vec!["sku,day", "a,2024-01-05", "d,2024-02-01"]
    );
}
