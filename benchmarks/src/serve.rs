//! `serve`: reading gold through `strata serve`.
//! - Point queries over the Postgres wire: 16 clients at once, each a prepared `select … where
//!   id = $1` on a gold table (100,000 and 1,000,000 rows), by tokio-postgres; p50 and p99 of
//!   each query's round trip (targets: p50 < 5 ms, p99 < 20 ms).
//! - A dashboard of 6 charts (KPI, line, area, stacked bar, grouped bar, table) over two
//!   1,000,000-row gold tables: the page served warm, logged in (target: < 200 ms).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Row, base_project, measure, time_strata, write};

const CLIENTS: usize = 16;
const QUERIES_PER_CLIENT: usize = 200;

/// A `strata serve` stopped when dropped.
pub(crate) struct Server(Child);

impl Server {
    /// `strata serve` of the project in `dir`, with the web UI and the Postgres wire protocol
    /// on free ports (returned: HTTP, Postgres), once both listen.
    pub(crate) fn start(strata: &Path, dir: &Path) -> Result<(Self, u16, u16)> {
        let (http_port, pg_port) = (free_port()?, free_port()?);
        let server = Server(
            Command::new(strata)
                .args([
                    "serve",
                    "--http",
                    &format!("127.0.0.1:{http_port}"),
                    "--pg",
                    &format!("127.0.0.1:{pg_port}"),
                ])
                .current_dir(dir)
                .env("STRATA_PROFILES_DIR", dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting strata serve")?,
        );
        wait_for(pg_port)?;
        wait_for(http_port)?;
        Ok((server, http_port, pg_port))
    }
}

/// `strata users add NAME --role ROLE` in `dir`, the password given on standard input.
pub(crate) fn add_user(
    strata: &Path,
    dir: &Path,
    name: &str,
    role: &str,
    password: &str,
) -> Result<()> {
    let add = Command::new(strata)
        .args(["users", "add", name, "--role", role])
        .current_dir(dir)
        .env("STRATA_PROFILES_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .map(|mut stdin| stdin.write_all(format!("{password}\n").as_bytes()))
                .transpose()?;
            child.wait_with_output()
        })?;
    if !add.status.success() {
        bail!("strata users add: {}", String::from_utf8_lossy(&add.stderr));
    }
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("strata serve did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn project(dir: &Path) -> Result<()> {
    base_project(dir, 2)?;
    for (name, rows) in [
        ("small_customers", 100_000),
        ("orders", 1_000_000),
        ("payments", 1_000_000),
    ] {
        write(
            dir,
            &format!("models/gold/{name}.sql"),
            &format!(
                "{{{{ config(materialized='table', schema='gold') }}}}
select value as id, value % 5000 as customer, (value % 997) * 1.25 as amount,
       case value % 4 when 0 then 'placed' when 1 then 'shipped' when 2 then 'completed' else 'returned' end as status,
       arrow_cast(cast(19000 + value % 730 as int), 'Date32') as day
from generate_series(1, {rows})"
            ),
        )?;
    }
    write(
        dir,
        "metrics/sales.yml",
        "metrics:
  - name: revenue
    model: orders
    measure: sum(amount)
    time: {column: day, grains: [day, month]}
    dimensions: [status]
  - name: paid
    model: payments
    measure: count(*)
    time: {column: day, grains: [day, month]}
    dimensions: [status]
",
    )?;
    write(
        dir,
        "dashboards/sales.yml",
        "title: Sales
charts:
  - {title: Revenue, type: kpi, metric: revenue, by: month}
  - {title: Revenue by month, type: line, metric: revenue, by: month}
  - {title: Revenue by status, type: area, metric: revenue, by: month, dimension: status}
  - {title: Payments by status, type: bar, metric: paid, by: month, dimension: status, stacked: true}
  - {title: Payments, type: bar, metric: paid, by: month, dimension: status}
  - {title: Biggest orders, type: table, sql: \"select id, amount from {{ ref('orders') }} order by amount desc, id limit 10\"}
",
    )?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn point_queries(port: u16, table: &str) -> Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let conninfo =
            format!("host=127.0.0.1 port={port} user=bench password=bench-password dbname=bench");
        let sql = format!(
            "select id, customer, amount, status, day from main_gold.{table} where id = $1"
        );
        tasks.push(tokio::spawn(async move {
            let (conn, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .map_err(|e| anyhow::anyhow!("connecting: {e:?}"))?;
            tokio::spawn(connection);
            let statement = conn
                .prepare(&sql)
                .await
                .map_err(|e| anyhow::anyhow!("preparing {sql}: {e:?}"))?;
            let mut times = Vec::with_capacity(QUERIES_PER_CLIENT);
            for q in 0..QUERIES_PER_CLIENT {
                let id = ((client * QUERIES_PER_CLIENT + q) * 7919 % 90_000 + 1) as i64;
                let start = Instant::now();
                let rows = conn
                    .query(&statement, &[&id])
                    .await
                    .map_err(|e| anyhow::anyhow!("querying: {e:?}"))?;
                times.push(start.elapsed());
                if rows.len() != 1 {
                    anyhow::bail!("id {id}: {} rows", rows.len());
                }
            }
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all)
}

fn http(port: u16, request: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(request.as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

pub fn serve(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    project(dir)?;
    time_strata(strata, dir, &["run"])?;
    add_user(strata, dir, "bench", "bi_reader", "bench-password")?;
    let (_server, http_port, pg_port) = Server::start(strata, dir)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for (table, size) in [("small_customers", "100k"), ("orders", "1M")] {
        // Warm: the session, the table's log and files.
        runtime.block_on(point_queries(pg_port, table))?;
        let times = runtime.block_on(point_queries(pg_port, table))?;
        rows.push(Row {
            scenario: "serve: wire point query p50".into(),
            size: size.into(),
            median: percentile(&times, 0.5),
            min: times[0],
            note: format!(
                "p99 {:.1} ms over {} queries, {CLIENTS} clients at once",
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                times.len()
            ),
        });
    }

    let body = "user=bench&password=bench-password";
    let login = http(
        http_port,
        &format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )?;
    let cookie = login
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .context("no session cookie from /login")?
        .to_string();
    let page = || -> Result<Duration> {
        let start = Instant::now();
        let text = http(
            http_port,
            &format!(
                "GET /dashboards/sales HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
            ),
        )?;
        let elapsed = start.elapsed();
        if !text.starts_with("HTTP/1.1 200") || text.matches("<svg").count() < 4 {
            bail!(
                "the dashboard did not render: {}",
                &text[..text.len().min(400)]
            );
        }
        Ok(elapsed)
    };
    page()?;
    let (median, min) = measure(runs.max(5), page)?;
    rows.push(Row {
        scenario: "serve: dashboard, 6 charts".into(),
        size: "2×1M".into(),
        median,
        min,
        note: "warm, logged in as bi_reader".into(),
    });
    Ok(rows)
}
