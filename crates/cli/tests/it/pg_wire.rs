//! `strata serve --pg`: the Postgres wire protocol with real clients — psql, psycopg2,
//! psycopg 3 and SQLAlchemy's inspector — logins, roles, refused writes, bad messages, and new
//! table versions seen without a restart.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use crate::project::{TestProject, free_port, wait_for_port};

/// A `strata serve --pg` running until dropped.
struct Wire {
    _served: crate::serve::Served,
    port: u16,
}

fn serve_pg(p: &TestProject) -> Wire {
    let port = free_port();
    let served = crate::serve::serve(p, &["--pg", &format!("127.0.0.1:{port}")]);
    wait_for_port(port);
    Wire {
        _served: served,
        port,
    }
}

/// psql from PATH or Debian's PostgreSQL packages (`.ci/run` installs them).
fn psql_bin() -> PathBuf {
    if let Ok(found) = glob_psql() {
        return found;
    }
    PathBuf::from("psql")
}

fn glob_psql() -> Result<PathBuf, ()> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| ())?
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().ok_or(())
}

/// Run psql commands as `user`: its output, or its error message.
fn psql(port: u16, user: &str, password: &str, commands: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(psql_bin());
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", "shop", "-X", "-w", "-v", "ON_ERROR_STOP=1"])
        .env("PGPASSWORD", password);
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    let out = cmd.output().expect("run psql");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).to_string()),
    }
}

fn shop() -> TestProject {
    let p = TestProject::starter();
    p.ok(&["build"]);
    p.add_user("ada", "admin", "analytical-engine");
    p.add_user("superset", "bi_reader", "bi-tool-secret");
    p
}

#[test]
fn psql_lists_and_reads_the_warehouse_and_every_bad_request_is_refused() {
    let p = shop();
    let s = serve_pg(&p);

    let out = psql(
        s.port,
        "ada",
        "analytical-engine",
        &["\\dn", "\\dt", "\\d gold.orders"],
    )
    .expect("psql as admin");
    for expected in [
        "gold",
        "silver",
        "orders",
        "customers",
        "order_date",
        "bigint",
        "date",
    ] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("rows ")),
        "the engine's own catalogs are not served:\n{out}"
    );
    let version = psql(s.port, "ada", "analytical-engine", &["select version()"]).expect("version");
    assert!(version.contains("PostgreSQL 16."), "{version}");
    let count = psql(
        s.port,
        "ada",
        "analytical-engine",
        &["select count(*) from silver.stg_orders"],
    )
    .expect("admin reads silver");
    assert!(count.contains("60"), "{count}");

    // Writes are refused, whatever the role; nothing changes.
    for statement in [
        "drop table gold.orders",
        "insert into gold.orders (order_id) values (1)",
        "create table gold.x (a int)",
        "delete from gold.orders",
    ] {
        let err = psql(s.port, "ada", "analytical-engine", &[statement]).expect_err(statement);
        assert!(
            err.contains("in a read-only transaction"),
            "{statement}: {err}"
        );
    }
    let still = psql(
        s.port,
        "ada",
        "analytical-engine",
        &["select count(*) from gold.orders"],
    )
    .expect("gold.orders is still there");
    assert!(still.contains("60"), "{still}");

    // bi_reader: gold, not silver, not by a table function either.
    let gold = psql(
        s.port,
        "superset",
        "bi-tool-secret",
        &["\\dn", "select count(*) from gold.customers"],
    )
    .expect("bi_reader reads gold");
    assert!(gold.contains("gold") && !gold.contains("silver"), "{gold}");
    let err = psql(
        s.port,
        "superset",
        "bi-tool-secret",
        &["select * from silver.stg_orders"],
    )
    .expect_err("bi_reader reads silver");
    assert!(err.contains("permission denied for schema silver"), "{err}");
    // Unqualified names through the search path (as SQL editors set it), and PostgreSQL's
    // date patterns (as Superset's time filters write them).
    let found = psql(
        s.port,
        "superset",
        "bi-tool-secret",
        &[
            "set search_path = gold",
            "select count(*) as n from orders where order_date >= to_date('2024-01-01', 'YYYY-MM-DD')",
        ],
    )
    .expect("search_path and to_date");
    assert!(found.contains("60"), "{found}");
    let err = psql(
        s.port,
        "superset",
        "bi-tool-secret",
        &[
            "set search_path to silver, gold",
            "select * from stg_orders",
        ],
    )
    .expect_err("bi_reader reads silver through the search path");
    assert!(err.contains("permission denied for schema silver"), "{err}");

    // Logins.
    let err = psql(s.port, "ada", "wrong-password", &["select 1"]).expect_err("wrong password");
    assert!(
        err.contains("password authentication failed for user \"ada\""),
        "{err}"
    );
    let err = psql(s.port, "nobody", "whatever-it-is", &["select 1"]).expect_err("no such user");
    assert!(
        err.contains("password authentication failed for user \"nobody\""),
        "{err}"
    );

    // A malformed message: the connection is dropped, the server stays up.
    let mut raw = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    raw.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, b'Q', 0, 0, 0, 1])
        .expect("send garbage");
    drop(raw);
    let mut raw = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    raw.write_all(&[0, 0, 0x7f, 0xff, 0, 3, 0, 0, b'u', b's', b'e', b'r'])
        .expect("send a truncated startup");
    drop(raw);
    psql(s.port, "ada", "analytical-engine", &["select 1"]).expect("still serving");

    // A new build shows without a restart.
    std::fs::write(
        p.path().join("models/marts/big_orders.sql"),
        "select order_id, amount from {{ ref('orders') }} where amount > 20",
    )
    .expect("write a model");
    p.ok(&["run", "--select", "big_orders"]);
    let tables = psql(s.port, "superset", "bi-tool-secret", &["\\dt gold.*"]).expect("\\dt");
    assert!(tables.contains("big_orders"), "{tables}");
}
/// A client program's path: the variable `var`, or `default` under `~/.cache/strata` (where
/// `.ci/run` installs them). In CI it must be there.
fn client(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/strata").join(default))
        })
        .filter(|p| p.exists());
    assert!(
        path.is_some() || std::env::var_os("CI").is_none(),
        "no {default} ({var}): .ci/run installs it"
    );
    path
}

/// Run a client program with the connection's arguments (and `extra` after them); it must
/// say `all clients passed`.
fn run_client(mut cmd: Command, port: u16, user: &str, password: &str, extra: &[&str]) {
    let out = cmd
        .args(["127.0.0.1", &port.to_string(), user, password, "shop"])
        .args(extra)
        .output()
        .expect("run the client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("all clients passed"),
        "{user}:\n{text}"
    );
}

fn wire_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/wire")
}

#[test]
fn psycopg_and_sqlalchemy_connect_query_with_parameters_and_inspect() {
    let Some(python) = client("STRATA_WIRE_PYTHON", "wire-venv/bin/python") else {
        eprintln!("skipped: no Python with psycopg and SQLAlchemy (set STRATA_WIRE_PYTHON)");
        return;
    };
    let python14 = client("STRATA_WIRE_PYTHON_SQLALCHEMY14", "wire-venv14/bin/python");
    let p = shop();
    let s = serve_pg(&p);
    let script = wire_dir().join("clients.py");
    for (user, password) in [("ada", "analytical-engine"), ("superset", "bi-tool-secret")] {
        let mut cmd = Command::new(&python);
        cmd.arg(&script);
        run_client(cmd, s.port, user, password, &[]);
    }
    // SQLAlchemy 1.4's inspector asks in its own words.
    if let Some(python14) = python14 {
        let mut cmd = Command::new(python14);
        cmd.arg(&script);
        run_client(cmd, s.port, "superset", "bi-tool-secret", &["sqlalchemy"]);
    }
}

#[test]
fn pgjdbc_reads_the_metadata_metabase_uses() {
    let jar = std::env::var_os("STRATA_PGJDBC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/postgresql.jar"));
    let has_java = Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !jar.exists() || !has_java {
        assert!(
            std::env::var_os("CI").is_none(),
            "no PgJDBC at {} or no java: .ci/run installs libpostgresql-jdbc-java and a JDK",
            jar.display()
        );
        eprintln!("skipped: no PgJDBC or no java");
        return;
    }
    let p = shop();
    let s = serve_pg(&p);
    for (user, password) in [("ada", "analytical-engine"), ("superset", "bi-tool-secret")] {
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&jar)
            .arg(wire_dir().join("JdbcClient.java"));
        run_client(cmd, s.port, user, password, &[]);
    }
}
