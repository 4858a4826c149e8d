//! A lake on S3-compatible object storage: a real S3 API server (moto) on loopback.
//!
//! `.ci/run` installs `moto_server`. Without it these tests fail, saying how to install it; set
//! `STRATA_SKIP_S3=1` to not run them on purpose (they then say so, and pass without checking).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::project::TestProject;

pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_moto() -> Option<String> {
    if let Ok(p) = std::env::var("STRATA_MOTO_SERVER") {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

pub(crate) fn start_moto() -> Option<Moto> {
    if std::env::var_os("STRATA_SKIP_S3").is_some() {
        assert!(
            std::env::var_os("CI").is_none(),
            "STRATA_SKIP_S3 is set in CI: the object-store tests must run there"
        );
        eprintln!("NOT RUN: STRATA_SKIP_S3 is set, the S3 test checked nothing");
        return None;
    }
    let Some(bin) = find_moto() else {
        panic!(
            "moto_server not found: `pip install 'moto[server]'` (as .ci/run does) and put it on PATH \
             or in STRATA_MOTO_SERVER, or set STRATA_SKIP_S3=1 to not run the S3 tests"
        );
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// Create a bucket with a plain HTTP request (moto accepts unsigned bucket creation).
pub(crate) fn create_bucket(port: u16, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "bucket creation failed: {reply}"
    );
}

/// Keys under `prefix` in `bucket` (moto answers unsigned listings).
pub(crate) fn list_keys(port: u16, bucket: &str, prefix: &str) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET /{bucket}?list-type=2&prefix={prefix} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "listing failed: {reply}");
    reply
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

/// The environment pointing the AWS client at moto.
pub(crate) fn s3_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}

/// Run strata with `env`; returns (success, stdout + stderr).
fn run_with(p: &TestProject, env: &[(&'static str, String)], args: &[&str]) -> (bool, String) {
    let out = p
        .std_command(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("strata");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn failed_writes_and_dropped_tables_leave_no_objects_and_one_store_writes_a_lake() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "guarded");
    let p = TestProject::with_files(&[
        (
            "models/bad.sql",
            // Fails at its last rows, after several 1 MB files were written.
            "{{ config(materialized='table', target_file_size=1048576) }}\n\
             select value, md5(cast(value as varchar)) as pad, 1 / (value - 400000) as boom from generate_series(1, 400000)",
        ),
        (
            "models/swap.sql",
            "{{ config(materialized='table') }}select 1 as x",
        ),
    ]);
    p.write(
        "profiles.yml",
        "t:\n  target: one\n  outputs:\n    one: {type: strata, schema: main, lake: 's3://guarded/lake', metadata: one.sqlite}\n    two: {type: strata, schema: main, lake: 's3://guarded/lake', metadata: two.sqlite}\n",
    );
    let env = s3_env(moto.port);
    let (ok, out) = run_with(&p, &env, &["run"]);
    assert!(!ok && out.contains("division by zero"), "{out}");
    // The failed table left nothing; the other was written.
    assert_eq!(
        list_keys(moto.port, "guarded", "lake/main/bad/"),
        Vec::<String>::new()
    );
    assert!(!list_keys(moto.port, "guarded", "lake/main/swap/").is_empty());
    // A table turned into a view is dropped from the object store.
    p.write(
        "models/swap.sql",
        "{{ config(materialized='view') }}select 2 as x",
    );
    p.remove("models/bad.sql");
    let (ok, out) = run_with(&p, &env, &["run"]);
    assert!(ok, "{out}");
    assert_eq!(
        list_keys(moto.port, "guarded", "lake/main/swap/"),
        Vec::<String>::new()
    );
    // A second metadata store (another machine's) is refused: it would miss the first's tables.
    let (ok, out) = run_with(&p, &env, &["--target", "two", "run"]);
    assert!(
        !ok && out.contains("is written by another metadata store"),
        "{out}"
    );
    assert!(
        list_keys(moto.port, "guarded", "lake/_strata/")
            .contains(&"lake/_strata/catalog.json".to_string())
    );
}

#[test]
fn a_lake_on_s3_compatible_storage() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "strata-lake");
    let p = TestProject::with_files(&[
        ("data/items.csv", "id,price\n1,10\n2,20\n3,30\n"),
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: items\n        meta: {external_location: data/items.csv}\n      - name: items_again\n        meta: {external_location: 's3://strata-lake/dev/main/items/', format: delta}\n",
        ),
        (
            "models/items.sql",
            "{{ config(materialized='table') }}select * from {{ source('raw', 'items') }}",
        ),
        (
            "models/expensive.sql",
            "select * from {{ ref('items') }} where price > 15",
        ),
    ]);
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main, lake: 's3://strata-lake/dev'}\n",
    );
    let env = s3_env(moto.port);
    let run = |args: &[&str]| {
        let (ok, text) = run_with(&p, &env, args);
        assert!(ok, "strata {args:?} failed:\n{text}");
        text
    };
    let out = run(&["run"]);
    assert!(out.contains("PASS=2"), "{out}");
    // Rebuilding replaces the table in place on the object store.
    run(&["run"]);
    assert_eq!(
        run(&[
            "show",
            "--inline",
            "select count(*) as n, sum(price) as s from expensive",
            "-o",
            "csv"
        ]),
        "n,s\n2,50\n"
    );
    // The Delta table on S3 reads back as a source too.
    assert_eq!(
        run(&[
            "show",
            "--inline",
            "select sum(price) as s from {{ source('raw', 'items_again') }}",
            "-o",
            "csv"
        ]),
        "s\n60\n"
    );
    assert!(run(&["debug"]).contains("All checks passed!"));
    // Nothing was written locally but the catalog.
    assert!(!p.path().join(".strata/dev/main").exists());
    assert!(p.path().join(".strata/dev/metadata.sqlite").exists());
}

#[test]
fn an_unreachable_object_store_is_reported() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='table') }}select 1 as x",
    )]);
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main, lake: 's3://nowhere/lake'}\n",
    );
    let started = Instant::now();
    let (ok, out) = run_with(&p, &s3_env(port), &["run"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the lake s3://nowhere/lake/ is not writable"),
        "{out}"
    );
    assert!(out.contains("profiles.yml"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_unsupported_object_store_is_reported() {
    let p = TestProject::with_files(&[(
        "models/m.sql",
        "{{ config(materialized='table') }}select 1 as x",
    )]);
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main, lake: 'gs://bucket/lake'}\n",
    );
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("`gs://` object stores are not supported"),
        "{out}"
    );
    assert!(out.contains("s3://"), "{out}");
}

/// Put an object with a plain HTTP request (moto accepts unsigned writes).
fn put_object(port: u16, bucket: &str, key: &str, body: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "PUT /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "put failed: {reply}");
}

#[test]
fn files_in_object_storage_are_ingested_once_each_into_a_lake_on_s3() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "landing");
    create_bucket(moto.port, "ingest-lake");
    put_object(
        moto.port,
        "landing",
        "events/2026-01-01.ndjson",
        "{\"id\": 1, \"kind\": \"signup\"}\n{\"id\": 2, \"kind\": \"login\"}\n",
    );
    put_object(moto.port, "landing", "other/skip.ndjson", "{\"id\": 99}\n");
    let p = TestProject::with_files(&[
        (
            "models/sources.yml",
            "version: 2
sources:
  - name: app
    ingest: {type: files}
    tables:
      - name: events
        ingest: {path: \"s3://landing/events/*.ndjson\"}
        columns:
          - name: id
            data_tests: [not_null, unique]
",
        ),
        (
            "models/kinds.sql",
            "{{ config(materialized='table') }}select kind, count(*) as n from {{ source('app', 'events') }} group by kind",
        ),
    ]);
    p.write(
        "profiles.yml",
        "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main, lake: 's3://ingest-lake/lake'}\n",
    );
    let env = s3_env(moto.port);
    let (ok, out) = run_with(&p, &env, &["ingest"]);
    assert!(ok && out.contains("2 rows from 1 file"), "{out}");
    assert!(!list_keys(moto.port, "ingest-lake", "lake/bronze/events/").is_empty());
    // A new object is loaded alone; the loaded one is not read again.
    put_object(
        moto.port,
        "landing",
        "events/2026-01-02.ndjson",
        "{\"id\": 3, \"kind\": \"login\"}\n",
    );
    let (ok, out) = run_with(&p, &env, &["ingest"]);
    assert!(ok && out.contains("1 row from 1 file"), "{out}");
    let (ok, out) = run_with(&p, &env, &["ingest"]);
    assert!(ok && out.contains("up to date"), "{out}");
    // Models, tests and show on the lake in object storage.
    let (ok, out) = run_with(&p, &env, &["build"]);
    assert!(ok, "{out}");
    let (ok, out) = run_with(
        &p,
        &env,
        &[
            "show",
            "--inline",
            "select kind, n from kinds order by kind",
            "--output",
            "csv",
        ],
    );
    assert!(ok && out.contains("login,2\nsignup,1"), "{out}");
    let (ok, out) = run_with(
        &p,
        &env,
        &[
            "show",
            "--inline",
            "select distinct _strata_source from bronze.events order by 1",
            "--output",
            "csv",
        ],
    );
    assert!(
        ok && out.contains(
            "s3://landing/events/2026-01-01.ndjson\ns3://landing/events/2026-01-02.ndjson"
        ),
        "{out}"
    );
}
