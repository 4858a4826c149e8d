//! A lake on S3-compatible object storage: a real S3 API server (moto) on loopback.
//!
//! `.ci/run` installs `moto_server`; elsewhere the test is skipped with a note when it is
//! missing (and fails when `CI` is set, so CI cannot skip it silently).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::project::TestProject;

struct Moto {
    child: Child,
    port: u16,
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

fn start_moto() -> Option<Moto> {
    let Some(bin) = find_moto() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server not found; .ci/run installs it with pip (moto[server])"
        );
        eprintln!("skipped: moto_server not found (pip install 'moto[server]' to run this test)");
        return None;
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
fn create_bucket(port: u16, bucket: &str) {
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
    let env = [
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto.port),
        ),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let run = |args: &[&str]| {
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
        assert!(out.status.success(), "strata {args:?} failed:\n{text}");
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
