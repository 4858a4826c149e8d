//! The `tpch` scenario: the 22 TPC-H queries (benchmarks/tpch/queries, with the
//! specification's validation parameters) over the same Parquet files, run by Strata's
//! embedded engine (`strata show --inline`, one process per query, over views of the files),
//! by Strata on a Ballista cluster of this machine (a scheduler and two executors started
//! with `strata cluster`, the project's `engine: ballista` target) and by DuckDB (its Python
//! package, one process per query, run just before Strata runs it). The data is generated once per scale factor with the `tpchgen`
//! crate and kept under `$CARGO_TARGET_DIR/tpch/sf<N>`.
//!
//! Strata's figures include starting the process and loading the project (measured alone as
//! `select 1` and shown); DuckDB's does not. Strata is also timed warm, as DuckDB is: each
//! query sent by one connection to `strata serve` over the Postgres wire protocol (rows
//! encoded as text and sent), after one run to warm it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow,
    RecordBatchIterator, RegionArrow, SupplierArrow,
};

use crate::serve::{Server, add_user};
use crate::{Row, measure, time_strata, write};

const TABLES: [&str; 8] = [
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

pub fn tpch(strata: &Path, runs: usize, scales: &[f64]) -> Result<Vec<Row>> {
    let queries_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch/queries");
    let python = duckdb_python()?;
    let mut rows = Vec::new();
    for &sf in scales {
        let data = data_dir(sf)?;
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let cluster = LocalCluster::start(strata, dir)?;
        project(dir, &data, cluster.scheduler)?;
        time_strata(strata, dir, &["run"])?;
        time_strata(strata, dir, &["run", "--target", "cluster"])?;
        // Strata warm as well, as DuckDB is timed: `strata serve` answering over the Postgres
        // wire protocol, on one connection.
        add_user(strata, dir, "bench", "admin", "bench-password")?;
        let (_server, _, pg_port) = Server::start(strata, dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(
                &format!(
                    "host=127.0.0.1 port={pg_port} user=bench password=bench-password dbname=tpch"
                ),
                tokio_postgres::NoTls,
            )
            .await
            .map_err(|e| anyhow::anyhow!("connecting to strata serve: {e:?}"))?;
            tokio::spawn(connection);
            anyhow::Ok(client)
        })?;
        let served = |sql: &str| -> Result<Duration> {
            runtime.block_on(async {
                let start = Instant::now();
                // A stalled answer fails the run instead of hanging it.
                let messages =
                    tokio::time::timeout(Duration::from_secs(300), client.simple_query(sql))
                        .await
                        .map_err(|_| anyhow::anyhow!("no answer within 5 minutes"))?
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let elapsed = start.elapsed();
                // A whole answer ends with its command's completion; it may hold no rows (q11
                // at scale factors above 1, with the specification's SF1 fraction).
                if !messages
                    .iter()
                    .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_)))
                {
                    bail!("no complete answer over the wire");
                }
                Ok(elapsed)
            })
        };
        let runs = runs.clamp(1, 3);
        let (startup, _) = measure(runs, || {
            time_strata(strata, dir, &["show", "--inline", "select 1", "-o", "csv"])
        })?;

        let answers = dir.join("duckdb-answers");
        std::fs::create_dir_all(&answers)?;
        // DuckDB runs each query right before Strata does, so that both meet the machine in
        // the same state: a shared VM's speed drifts by 10-15% over minutes.
        let duckdb = |name: &str| -> Result<f64> {
            let out = Command::new(&python)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch/duckdb_run.py"))
                .arg(&data)
                .arg(&queries_dir)
                .arg(runs.to_string())
                .arg(&answers)
                .arg(name)
                .output()
                .context("running DuckDB")?;
            if !out.status.success() {
                bail!("DuckDB failed:\n{}", String::from_utf8_lossy(&out.stderr));
            }
            let times: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            times[name]
                .as_f64()
                .with_context(|| format!("DuckDB gave no time for {name}"))
        };

        let (mut total, mut total_warm, mut total_duck, mut total_cluster) = (
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
        );
        for q in 1..=22 {
            let name = format!("q{q:02}");
            let sql = std::fs::read_to_string(queries_dir.join(format!("{name}.sql")))?;
            eprintln!("tpch sf{sf}: duckdb {name}");
            let d = duckdb(&name)?;
            eprintln!("tpch sf{sf}: strata {name}");
            // The same answer first: a fast wrong answer is no answer.
            let ours = Command::new(strata)
                .args(["show", "--inline", &sql, "--limit", "-1", "-o", "csv"])
                .current_dir(dir)
                .env("STRATA_PROFILES_DIR", dir)
                .output()?;
            let theirs = std::fs::read_to_string(answers.join(format!("{name}.csv")))?;
            if let Err(why) = same_answer(&String::from_utf8_lossy(&ours.stdout), &theirs) {
                bail!("tpch {name} at sf{sf}: Strata's answer differs from DuckDB's: {why}");
            }
            let (median, min) = measure(runs, || {
                time_strata(
                    strata,
                    dir,
                    &["show", "--inline", &sql, "--limit", "-1", "-o", "csv"],
                )
            })?;
            eprintln!("tpch sf{sf}: strata serve {name}");
            let (warm, _) =
                measure(runs, || served(&sql)).with_context(|| format!("{name} over the wire"))?;
            eprintln!("tpch sf{sf}: strata on ballista {name}");
            let on_cluster = [
                "--target", "cluster", "show", "--inline", &sql, "--limit", "-1", "-o", "csv",
            ];
            let clustered = Command::new(strata)
                .args(on_cluster)
                .current_dir(dir)
                .env("STRATA_PROFILES_DIR", dir)
                .output()?;
            if let Err(why) = same_answer(&String::from_utf8_lossy(&clustered.stdout), &theirs) {
                bail!(
                    "tpch {name} at sf{sf}: Strata's answer on Ballista differs from DuckDB's: {why}\n{}",
                    String::from_utf8_lossy(&clustered.stderr)
                );
            }
            let (cluster_median, _) = measure(runs, || time_strata(strata, dir, &on_cluster))?;
            total += median;
            total_warm += warm;
            total_cluster += cluster_median;
            total_duck += Duration::from_secs_f64(d / 1000.0);
            rows.push(Row {
                scenario: format!("tpch {name}"),
                size: format!("sf{sf}"),
                median,
                min,
                note: format!(
                    "duckdb {d:.1} ms; strata / duckdb {:.2}; warm {:.1} ms, / duckdb {:.2}; ballista {:.1} ms",
                    median.as_secs_f64() * 1000.0 / d,
                    warm.as_secs_f64() * 1000.0,
                    warm.as_secs_f64() * 1000.0 / d,
                    cluster_median.as_secs_f64() * 1000.0
                ),
            });
        }
        rows.push(Row {
            scenario: "tpch total".into(),
            size: format!("sf{sf}"),
            median: total,
            min: total,
            note: format!(
                "duckdb {:.1} ms; strata / duckdb {:.2} (target <= 1.5); strata's start-up {:.1} ms a query; warm (strata serve) {:.1} ms, / duckdb {:.2}; ballista (1 scheduler, 2 executors) {:.1} ms",
                total_duck.as_secs_f64() * 1000.0,
                total.as_secs_f64() / total_duck.as_secs_f64(),
                startup.as_secs_f64() * 1000.0,
                total_warm.as_secs_f64() * 1000.0,
                total_warm.as_secs_f64() / total_duck.as_secs_f64(),
                total_cluster.as_secs_f64() * 1000.0
            ),
        });
    }
    Ok(rows)
}

/// Whether two CSV answers hold the same rows in the same order: numbers equal to a relative
/// 1e-9, or within 1e-6 (an average of decimals is a decimal of scale 6 in DataFusion and a
/// double in DuckDB, which also prints decimals with their scale, `12.5000`), text equal once
/// trimmed.
fn same_answer(ours: &str, theirs: &str) -> std::result::Result<(), String> {
    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .skip(1)
            .map(|l| {
                split_csv(l)
                    .into_iter()
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect()
    };
    let (a, b) = (rows(ours), rows(theirs));
    if a.len() != b.len() {
        return Err(format!("{} rows against {}", a.len(), b.len()));
    }
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        let same = ra.len() == rb.len()
            && ra
                .iter()
                .zip(rb)
                .all(|(x, y)| match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(p), Ok(q)) => (p - q).abs() <= (1e-9 * p.abs().max(q.abs())).max(1e-6),
                    _ => x == y,
                });
        if !same {
            return Err(format!("row {}: {ra:?} against {rb:?}", i + 1));
        }
    }
    Ok(())
}

/// The fields of one CSV line (quotes as RFC 4180 writes them).
fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// A Ballista cluster of this machine: a scheduler and two executors, `strata cluster`
/// processes stopped when dropped.
struct LocalCluster {
    processes: Vec<std::process::Child>,
    scheduler: u16,
}

impl LocalCluster {
    fn start(strata: &Path, dir: &Path) -> Result<Self> {
        let port = || -> Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let scheduler = port()?;
        let mut cluster = Self {
            processes: Vec::new(),
            scheduler,
        };
        let spawn = |args: &[&str]| {
            Command::new(strata)
                .arg("cluster")
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting a cluster process")
        };
        cluster
            .processes
            .push(spawn(&["scheduler", "--port", &scheduler.to_string()])?);
        wait_for(scheduler)?;
        for n in 0..2 {
            let (flight, grpc) = (port()?, port()?);
            let work = dir.join(format!("executor{n}"));
            std::fs::create_dir_all(&work)?;
            cluster.processes.push(spawn(&[
                "executor",
                "--scheduler",
                &format!("df://127.0.0.1:{scheduler}"),
                "--port",
                &flight.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--work-dir",
                &work.to_string_lossy(),
            ])?);
            wait_for(flight)?;
        }
        Ok(cluster)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn wait_for(port: u16) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("a cluster process did not listen on port {port} within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A project whose views `lineitem`, `orders`, … read the Parquet files, in the schema
/// queries resolve unqualified names in; its `cluster` target runs them on Ballista.
fn project(dir: &Path, data: &Path, scheduler: u16) -> Result<()> {
    write(dir, "strata.yml", "name: tpch\nprofile: tpch\n")?;
    write(
        dir,
        "profiles.yml",
        &format!(
            "tpch:\n  target: dev\n  outputs:\n    dev: {{type: strata, schema: main, threads: 2}}\n    cluster: {{type: strata, schema: main, threads: 2, engine: ballista, scheduler: \"df://127.0.0.1:{scheduler}\"}}\n"
        ),
    )?;
    let mut sources = String::from("sources:\n  - name: tpch\n    tables:\n");
    for t in TABLES {
        sources.push_str(&format!(
            "      - name: {t}\n        external_location: \"{}/{t}/*.parquet\"\n",
            data.display()
        ));
        write(
            dir,
            &format!("models/{t}.sql"),
            &format!(
                "{{{{ config(materialized='view') }}}}\nselect * from {{{{ source('tpch', '{t}') }}}}\n"
            ),
        )?;
    }
    write(dir, "models/sources.yml", &sources)
}

/// The data of scale factor `sf`, generated on first use.
fn data_dir(sf: f64) -> Result<PathBuf> {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = base.join("tpch").join(format!("sf{sf}"));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    eprintln!("tpch sf{sf}: generating the data in {}", dir.display());
    let parts = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1) as i32;
    for table in TABLES {
        let out = dir.join(table);
        std::fs::create_dir_all(&out)?;
        let n = if matches!(table, "nation" | "region") {
            1
        } else {
            parts
        };
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (1..=n)
                .map(|part| {
                    let path = out.join(format!("part-{part}.parquet"));
                    s.spawn(move || write_part(table, sf, part, n, &path))
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
            }
            Ok(())
        })?;
    }
    std::fs::write(dir.join(".complete"), "")?;
    Ok(dir)
}

fn write_part(table: &str, sf: f64, part: i32, parts: i32, path: &Path) -> Result<()> {
    let batches: Box<dyn RecordBatchIterator> = match table {
        "nation" => Box::new(NationArrow::new(NationGenerator::new(sf, part, parts))),
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(sf, part, parts))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(sf, part, parts))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(sf, part, parts))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, part, parts))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(sf, part, parts))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(sf, part, parts))),
        _ => Box::new(LineItemArrow::new(LineItemGenerator::new(sf, part, parts))),
    };
    let schema = Arc::clone(batches.schema());
    let file = std::fs::File::create(path)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    for batch in batches {
        let batch: RecordBatch = batch;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(())
}

/// Python with DuckDB: ~/.cache/strata/duckdb-venv, made on first use.
fn duckdb_python() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/strata/duckdb-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("tpch: installing DuckDB into {}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "duckdb"])
                .status()?
                .success();
        if !ok {
            bail!(
                "cannot install DuckDB (pip install duckdb) into {}",
                venv.display()
            );
        }
    }
    Ok(python)
}
