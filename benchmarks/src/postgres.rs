//! The `postgres` scenario: 10,000,000 rows of 6 mixed columns read from a PostgreSQL table
//! into bronze by `strata ingest`, against `psql`'s `\copy … to '/dev/null'` of the same rows
//! on the same machine (the rate a client can get the rows out at all). Peak memory is the
//! process's maximum resident set, from GNU time.
//!
//! It starts a throwaway cluster of the newest PostgreSQL under /usr/lib/postgresql (set
//! `STRATA_POSTGRES_BIN` to another bin folder), on a free loopback port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Row, base_project, measure, write};

const ROWS: u64 = 10_000_000;

/// A cluster stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    root: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "stop"])
            .output();
    }
}

impl Cluster {
    fn owner(&self, program: &Path) -> Command {
        match self.root {
            true => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            false => Command::new(program),
        }
    }

    fn start() -> Result<Cluster> {
        let bin = match std::env::var_os("STRATA_POSTGRES_BIN") {
            Some(b) => PathBuf::from(b),
            None => {
                let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .context(
                        "no PostgreSQL under /usr/lib/postgresql: apt-get install postgresql-15",
                    )?
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                        Some((v, e.path().join("bin")))
                    })
                    .collect();
                found.sort();
                found.pop().context("no PostgreSQL version found")?.1
            }
        };
        let uid = Command::new("id").arg("-u").output()?;
        let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir()?;
        if root {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            root,
        };
        let data = cluster.dir.path().join("data");
        let out = cluster
            .owner(&cluster.bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf"))?;
        conf.push_str(&format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\nshared_buffers = '1GB'\nmax_wal_size = '4GB'\n",
            cluster.dir.path().display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf)?;
        let out = cluster
            .owner(&cluster.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("server.log"))
            .args(["-w", "start"])
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(cluster)
    }

    fn psql(&self, sql: &str) -> Result<Duration> {
        let start = Instant::now();
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                "postgres",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            bail!(
                "psql failed: {}\n{sql}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(elapsed)
    }
}

pub fn postgres(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let cluster = Cluster::start()?;
    eprintln!("postgres: generating {ROWS} rows");
    cluster.psql(&format!(
        "create table orders (id bigint primary key, customer text, amount numeric(12,2),
                              placed_at timestamptz, paid boolean, quantity integer);
         insert into orders
           select i, 'customer_' || (i % 50000), (i % 100000) / 100.0,
                  timestamptz '2026-01-01' + i * interval '1 second', i % 3 = 0, (i % 17)::int
           from generate_series(1, {ROWS}) as i;"
    ))?;
    cluster.psql("vacuum analyze orders")?;
    let columns = "id, customer, amount, placed_at, paid, quantity";
    let (psql, psql_min) = measure(runs, || {
        cluster.psql(&format!(
            "\\copy (select {columns} from orders) to '/dev/null'"
        ))
    })?;

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    base_project(dir, 2)?;
    let mut rows = vec![Row {
        scenario: "postgres: psql \\copy to /dev/null".into(),
        size: "10M rows".into(),
        median: psql,
        min: psql_min,
        note: format!(
            "the baseline: {:.2} M rows/s",
            ROWS as f64 / psql.as_secs_f64() / 1e6
        ),
    }];
    for parallel in [2, 1] {
        write(
            dir,
            "models/sources.yml",
            &format!(
                "version: 2\nsources:\n  - name: shop\n    ingest: {{type: postgres, url: \"postgresql://postgres@127.0.0.1:{}/postgres\"}}\n    tables:\n      - name: orders\n        ingest: {{primary_key: id, parallel: {parallel}}}\n",
                cluster.port
            ),
        )?;
        let lake = dir.join(".strata");
        let mut peak = 0;
        let (median, min) = measure(runs, || {
            let _ = std::fs::remove_dir_all(&lake);
            let (t, mib, _) = crate::time_with_memory(strata, dir, &["ingest"])?;
            peak = peak.max(mib);
            Ok(t)
        })?;
        rows.push(Row {
            scenario: format!("postgres: ingest, {parallel} reader(s)"),
            size: "10M rows".into(),
            median,
            min,
            note: format!(
                "{:.2} M rows/s, {:.0}% of psql's rate (target >= 70%); peak {peak} MiB (target < 1024)",
                ROWS as f64 / median.as_secs_f64() / 1e6,
                psql.as_secs_f64() / median.as_secs_f64() * 100.0
            ),
        });
    }
    Ok(rows)
}
