//! `strata-bench`: times the `strata` binary on generated projects and prints a table.
//!
//! Scenarios (each at several sizes):
//! - `startup`: the starter project (5 models, 3 CSV sources): `strata run`, process start to exit.
//! - `parse`: N models with 2 refs each: `strata ls` (load + parse) and `strata compile`
//!   (load + parse + compile + write compiled SQL).
//! - `chain`: a chain of N tiny models (views, then tables): `strata run`; the per-model
//!   overhead is the run time divided by N.
//! - `seed`: a CSV of N rows (integers, text, decimals, dates, booleans): `strata seed`.
//! - `merge`: an incremental model over a 10,000,000-row table: `--full-refresh` (rebuild in
//!   full) against merging 1% changed rows by `unique_key`, with the changes among the
//!   latest rows (partitioned by day, and unpartitioned), and spread over the whole table.
//! - `snapshot`: a check-strategy snapshot of 1,000,000 records in which 1% change each run.
//! - `packages`: the own test projects of dbt_utils and of dbt_expectations (with dbt_date),
//!   unmodified, from the third-party copies in `../shared/vendor` (or `STRATA_VENDOR`):
//!   `strata build` from nothing (no lake, no target folder), every node.
//! - `ingest`: 1 GiB of ndjson files (16 of 64 MiB, 6 mixed columns) loaded into a bronze table
//!   by `strata ingest` from an empty lake, then again with no new file.
//!
//! - `postgres`: 10,000,000 rows (6 mixed columns) from a PostgreSQL table into bronze by
//!   `strata ingest` (two readers, then one), against `psql`'s `\copy … to '/dev/null'` of the
//!   same rows; with the peak memory of the load (see `postgres.rs`).
//!
//! - `quality`: a 10,000,000-row table model built with quarantine checks against without, and
//!   `strata build` with anomaly tests against `strata run` (see `quality.rs`).
//!
//! - `serve`: point queries over the Postgres wire (16 clients at once) and a 6-chart dashboard
//!   over 1,000,000-row gold tables (see `serve.rs`).
//!
//! - `orchestrate`: the scheduling overhead between two dependent pipeline steps, and a
//!   pipeline of 1,000 steps (see `orchestrate.rs`).
//!
//! - `saas`: the SaaS example (examples/saas) at scales 1, 10 and 100: data generation,
//!   ingestion, build and tests, each with its rows per second and peak memory (see `saas.rs`).
//!
//! - `tpch`: the 22 TPC-H queries at scale factor 1 (`--tpch-scales 1,10`), Strata's embedded
//!   engine against DuckDB on the same Parquet files (see `tpch.rs`).
//!
//! Build the binary first (`cargo build --release -p strata`), then
//! `cargo run --release -p strata-benchmarks -- [--strata PATH] [--runs N] [SCENARIO...]`.

mod orchestrate;
mod postgres;
mod quality;
mod saas;
mod serve;
mod tpch;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Benchmark scenarios for the strata binary")]
struct Args {
    /// The strata binary (default: target/release/strata under CARGO_TARGET_DIR or ./target).
    #[arg(long)]
    strata: Option<PathBuf>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Scenarios to run: startup, parse, chain, seed, merge, snapshot, packages, ingest,
    /// postgres, quality, serve, orchestrate, saas, tpch (default: all).
    scenarios: Vec<String>,
    /// The TPC-H scale factors of the `tpch` scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0])]
    tpch_scales: Vec<f64>,
    /// The scales of the `saas` scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 10.0, 100.0])]
    saas_scales: Vec<f64>,
}

struct Row {
    scenario: String,
    size: String,
    median: Duration,
    min: Duration,
    note: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let strata = match args.strata.clone() {
        Some(p) => p,
        None => {
            let dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"));
            dir.join("release").join("strata")
        }
    };
    if !strata.is_file() {
        bail!(
            "no strata binary at {}; build it with `cargo build --release -p strata` or pass --strata",
            strata.display()
        );
    }
    let all = [
        "startup",
        "parse",
        "chain",
        "seed",
        "merge",
        "snapshot",
        "packages",
        "ingest",
        "postgres",
        "quality",
        "serve",
        "orchestrate",
        "saas",
        "tpch",
    ];
    let chosen: Vec<&str> = if args.scenarios.is_empty() {
        all.to_vec()
    } else {
        args.scenarios.iter().map(String::as_str).collect()
    };
    let mut rows = Vec::new();
    for s in chosen {
        match s {
            "startup" => rows.extend(startup(&strata, args.runs)?),
            "parse" => rows.extend(parse(&strata, args.runs)?),
            "chain" => rows.extend(chain(&strata, args.runs)?),
            "seed" => rows.extend(seed(&strata, args.runs)?),
            "merge" => rows.extend(merge(&strata, args.runs)?),
            "snapshot" => rows.extend(snapshot(&strata, args.runs)?),
            "packages" => rows.extend(packages(&strata, args.runs)?),
            "ingest" => rows.extend(ingest(&strata, args.runs)?),
            "postgres" => rows.extend(postgres::postgres(&strata, args.runs)?),
            "quality" => rows.extend(quality::quality(&strata, args.runs)?),
            "serve" => rows.extend(serve::serve(&strata, args.runs)?),
            "orchestrate" => rows.extend(orchestrate::orchestrate(&strata, args.runs)?),
            "saas" => rows.extend(saas::saas(&strata, &args.saas_scales)?),
            "tpch" => rows.extend(tpch::tpch(&strata, args.runs, &args.tpch_scales)?),
            other => bail!("unknown scenario `{other}`; choose from {}", all.join(", ")),
        }
    }
    println!();
    println!(
        "{:<28} {:>8} {:>12} {:>12}  note",
        "scenario", "size", "median", "min"
    );
    for r in rows {
        println!(
            "{:<28} {:>8} {:>10.1}ms {:>10.1}ms  {}",
            r.scenario,
            r.size,
            r.median.as_secs_f64() * 1e3,
            r.min.as_secs_f64() * 1e3,
            r.note
        );
    }
    Ok(())
}

/// Run `strata ARGS` in `dir`, failing on a non-zero exit; returns the wall time.
fn time_strata(strata: &Path, dir: &Path, args: &[&str]) -> Result<Duration> {
    time_strata_exit(strata, dir, args, &[0])
}

/// [`time_strata`] accepting the exit codes in `ok` (a build whose tests fail exits 1).
fn time_strata_exit(strata: &Path, dir: &Path, args: &[&str], ok: &[i32]) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(strata)
        .args(args)
        .current_dir(dir)
        .env("STRATA_PROFILES_DIR", dir)
        .output()
        .with_context(|| format!("running {}", strata.display()))?;
    let elapsed = start.elapsed();
    if !out.status.code().is_some_and(|c| ok.contains(&c)) {
        bail!(
            "strata {args:?} failed in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elapsed)
}

/// Run `strata ARGS` in `dir` under GNU time: the wall time, the peak resident set (MiB) and
/// what it printed.
fn time_with_memory(strata: &Path, dir: &Path, args: &[&str]) -> Result<(Duration, u64, String)> {
    let report = dir.join("time.out");
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&report)
        .args(["-f", "%M"])
        .arg(strata)
        .args(args)
        .current_dir(dir)
        .env("STRATA_PROFILES_DIR", dir)
        .output()
        .context("running strata under /usr/bin/time (Debian package `time`)")?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "strata {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&report)?;
    let kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("GNU time's report")?;
    Ok((
        elapsed,
        kib / 1024,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn measure(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<(Duration, Duration)> {
    f()?; // warm the file cache
    let mut times = (0..runs.max(1)).map(|_| f()).collect::<Result<Vec<_>>>()?;
    times.sort();
    Ok((times[times.len() / 2], times[0]))
}

fn write(dir: &Path, rel: &str, text: &str) -> Result<()> {
    let path = dir.join(rel);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn base_project(dir: &Path, threads: usize) -> Result<()> {
    write(dir, "strata.yml", "name: bench\nprofile: bench\n")?;
    write(
        dir,
        "profiles.yml",
        &format!(
            "bench:\n  target: dev\n  outputs:\n    dev: {{type: strata, schema: main, threads: {threads}}}\n"
        ),
    )
}

fn startup(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("shop");
    let status = Command::new(strata).args(["init"]).arg(&dir).output()?;
    if !status.status.success() {
        bail!(
            "strata init failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let (median, min) = measure(runs, || time_strata(strata, &dir, &["run"]))?;
    let (ls_median, ls_min) = measure(runs, || time_strata(strata, &dir, &["ls"]))?;
    Ok(vec![
        Row {
            scenario: "startup: run starter".into(),
            size: "5".into(),
            median,
            min,
            note: "5 models, 3 CSV sources, process start to exit (target < 300 ms)".into(),
        },
        Row {
            scenario: "startup: ls starter".into(),
            size: "5".into(),
            median: ls_median,
            min: ls_min,
            note: "load + parse only".into(),
        },
    ])
}

/// A project of `n` models where model i refs two earlier models (2n refs in all).
fn generate_wide(dir: &Path, n: usize) -> Result<()> {
    base_project(dir, 4)?;
    for i in 0..n {
        let sql = if i < 2 {
            format!("select {i} as id, 'm{i}' as name")
        } else {
            let a = i - 1;
            let b = (i * 7919) % i;
            format!(
                "{{{{ config(tags=['g{}']) }}}}\nselect id + 1 as id, name from {{{{ ref('m{a}') }}}}\nunion all\nselect id, name from {{{{ ref('m{b}') }}}} where id > {i}",
                i % 10
            )
        };
        write(dir, &format!("models/g{}/m{i}.sql", i / 500), &sql)?;
    }
    Ok(())
}

fn parse(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for n in [1_000, 5_000] {
        let tmp = tempfile::tempdir()?;
        generate_wide(tmp.path(), n)?;
        let (median, min) = measure(runs, || {
            time_strata(strata, tmp.path(), &["ls", "--output", "name"])
        })?;
        rows.push(Row {
            scenario: "parse: ls".into(),
            size: n.to_string(),
            median,
            min,
            note: format!("{n} models, {} refs", 2 * n.saturating_sub(2)),
        });
        let (median, min) = measure(runs, || time_strata(strata, tmp.path(), &["compile"]))?;
        rows.push(Row {
            scenario: "parse + compile".into(),
            size: n.to_string(),
            median,
            min,
            note: if n == 5_000 {
                "target < 2 s".into()
            } else {
                String::new()
            },
        });
    }
    Ok(rows)
}

fn generate_chain(dir: &Path, n: usize, materialized: &str) -> Result<()> {
    base_project(dir, 1)?;
    write(
        dir,
        "models/c0.sql",
        &format!("{{{{ config(materialized='{materialized}') }}}}select 1 as id"),
    )?;
    for i in 1..n {
        write(
            dir,
            &format!("models/c{i}.sql"),
            &format!(
                "{{{{ config(materialized='{materialized}') }}}}select id + 1 as id from {{{{ ref('c{}') }}}}",
                i - 1
            ),
        )?;
    }
    Ok(())
}

fn chain(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for materialized in ["view", "table"] {
        for n in [50, 200] {
            let tmp = tempfile::tempdir()?;
            generate_chain(tmp.path(), n, materialized)?;
            let (median, min) = measure(runs, || time_strata(strata, tmp.path(), &["run"]))?;
            let per_model = median.as_secs_f64() * 1e3 / n as f64;
            rows.push(Row {
                scenario: format!("chain of {materialized}s: run"),
                size: n.to_string(),
                median,
                min,
                note: format!("{per_model:.2} ms per model (target < 15 ms)"),
            });
        }
    }
    Ok(rows)
}

fn seed(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    use std::io::Write;
    let mut rows = Vec::new();
    for n in [100_000usize, 1_000_000] {
        let tmp = tempfile::tempdir()?;
        base_project(tmp.path(), 1)?;
        std::fs::create_dir_all(tmp.path().join("seeds"))?;
        let file = std::fs::File::create(tmp.path().join("seeds/events.csv"))?;
        let mut w = std::io::BufWriter::new(file);
        writeln!(w, "id,customer,amount,day,paid,channel")?;
        for i in 0..n {
            writeln!(
                w,
                "{i},customer_{},{}.{:02},2024-{:02}-{:02},{},{}",
                i % 5_000,
                i % 1_000,
                i % 100,
                i % 12 + 1,
                i % 28 + 1,
                i % 3 == 0,
                ["web", "store", "phone"][i % 3]
            )?;
        }
        w.flush()?;
        drop(w);
        let (median, min) = measure(runs, || time_strata(strata, tmp.path(), &["seed"]))?;
        rows.push(Row {
            scenario: "seed: load csv".into(),
            size: n.to_string(),
            median,
            min,
            note: if n == 1_000_000 {
                "6 columns, type inference over every row (target < 2 s)".into()
            } else {
                String::new()
            },
        });
    }
    Ok(rows)
}

/// A 10M-row table of facts (id, customer, amount, day: 365 days of ~27,400 rows).
const FACTS_10M: &str = "{{ config(materialized='table') }}
select value as id, value % 50000 as customer, (value % 1000) * 1.5 as amount,
       arrow_cast(cast(19723 + floor(value / 27400.0) as int), 'Date32') as day
from generate_series(1, 10000000)";

fn merge(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    // (layout, which ids change)
    let cases = [
        ("partition_by day", "partition_by='day', ", "id > 9900000"),
        ("unpartitioned", "", "id > 9900000"),
        ("unpartitioned", "", "id % 100 = 7"),
    ];
    for (layout, config, changed) in cases {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        base_project(dir, 2)?;
        write(dir, "models/base.sql", FACTS_10M)?;
        write(
            dir,
            "models/facts.sql",
            &format!(
                "{{{{ config(materialized='incremental', unique_key='id', {config}) }}}}
select id, customer, amount + {{{{ var('round', 0) }}}} as amount, day from {{{{ ref('base') }}}}
{{% if is_incremental() %}}where {changed}{{% endif %}}"
            ),
        )?;
        time_strata(strata, dir, &["run"])?;
        let (full, full_min) = measure(runs, || {
            time_strata(strata, dir, &["run", "-s", "facts", "--full-refresh"])
        })?;
        let mut round = 0;
        let (merged, merged_min) = measure(runs, || {
            round += 1;
            let vars = format!("{{round: {round}}}");
            time_strata(strata, dir, &["run", "-s", "facts", "--vars", &vars])
        })?;
        let which = if changed.contains('%') {
            "spread over all rows"
        } else {
            "latest rows"
        };
        rows.push(Row {
            scenario: format!("10M facts, {layout}: full"),
            size: "10000000".into(),
            median: full,
            min: full_min,
            note: "--full-refresh".into(),
        });
        rows.push(Row {
            scenario: format!("10M facts, {layout}: merge"),
            size: "100000".into(),
            median: merged,
            min: merged_min,
            note: format!(
                "1% changed ({which}): {:.1}% of the full rebuild (target < 10%)",
                merged.as_secs_f64() * 100.0 / full.as_secs_f64()
            ),
        });
    }
    Ok(rows)
}

fn snapshot(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    base_project(dir, 2)?;
    write(
        dir,
        "models/customers.sql",
        "{{ config(materialized='table') }}
select value as id, concat('customer ', value) as name, concat('segment ', value % 7) as segment,
       value % 90 as age
from generate_series(1, 1000000)",
    )?;
    write(
        dir,
        "snapshots/customers_history.sql",
        "{% snapshot customers_history %}
{{ config(unique_key='id', strategy='check', check_cols=['segment', 'age']) }}
select id, name,
       case when id % 100 = 0 then concat('moved ', {{ var('round', 0) }}) else segment end as segment,
       age
from {{ ref('customers') }}
{% endsnapshot %}",
    )?;
    time_strata(strata, dir, &["run"])?;
    time_strata(strata, dir, &["snapshot"])?;
    let mut round = 0;
    let (median, min) = measure(runs, || {
        round += 1;
        let vars = format!("{{round: {round}}}");
        time_strata(strata, dir, &["snapshot", "--vars", &vars])
    })?;
    Ok(vec![Row {
        scenario: "snapshot: 1% of records changed".into(),
        size: "1000000".into(),
        median,
        min,
        note: "check strategy, 10,000 versions closed and added per run (target < 3 s)".into(),
    }])
}

/// Copy the folder `from` to `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The own test projects of real dbt packages, built from nothing.
fn packages(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let vendor = std::env::var_os("STRATA_VENDOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/vendor"));
    if !vendor.join("dbt_utils").is_dir() {
        bail!(
            "no dbt packages at {}: set STRATA_VENDOR to the folder holding dbt_utils, dbt_expectations and dbt_date",
            vendor.display()
        );
    }
    let mut rows = Vec::new();
    for (package, extra, note) in [
        ("dbt_utils", None, "dbt-duckdb: about 16 s (target < 1.5 s)"),
        (
            "dbt_expectations",
            Some("dbt_date"),
            "with dbt_date; dbt-duckdb: about 16 s (target < 1.5 s)",
        ),
    ] {
        let tmp = tempfile::tempdir()?;
        copy_dir(&vendor.join(package), &tmp.path().join(package))?;
        let dir = tmp.path().join(package).join("integration_tests");
        if let Some(extra) = extra {
            copy_dir(&vendor.join(extra), &dir.join("dbt_packages").join(extra))?;
        }
        write(
            &dir,
            "profiles.yml",
            "integration_tests:\n  target: dev\n  outputs:\n    dev: {type: strata, threads: 2}\n",
        )?;
        let (median, min) = measure(runs, || {
            for gone in ["target", ".strata"] {
                let _ = std::fs::remove_dir_all(dir.join(gone));
            }
            time_strata_exit(strata, &dir, &["build"], &[0, 1])
        })?;
        rows.push(Row {
            scenario: format!("packages: build {package}"),
            size: "suite".into(),
            median,
            min,
            note: note.into(),
        });
    }
    Ok(rows)
}

/// ndjson files of about 64 MiB each, 6 mixed columns, `total_mib` in all.
fn ndjson_files(dir: &Path, total_mib: usize) -> Result<u64> {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("data/events"))?;
    let mut bytes = 0u64;
    let mut id = 0u64;
    for part in 0..total_mib.div_ceil(64) {
        let file = std::fs::File::create(dir.join(format!("data/events/part-{part:03}.ndjson")))?;
        let mut w = std::io::BufWriter::new(file);
        let mut written = 0usize;
        while written < 64 << 20 {
            let line = format!(
                "{{\"id\":{id},\"customer\":\"customer_{}\",\"amount\":{}.{:02},\"at\":\"2026-{:02}-{:02}T{:02}:{:02}:00Z\",\"paid\":{},\"channel\":\"{}\"}}\n",
                id % 50_000,
                id % 1_000,
                id % 100,
                id % 12 + 1,
                id % 28 + 1,
                id % 24,
                id % 60,
                id.is_multiple_of(3),
                ["web", "store", "phone"][(id % 3) as usize]
            );
            w.write_all(line.as_bytes())?;
            written += line.len();
            id += 1;
        }
        w.flush()?;
        bytes += written as u64;
    }
    Ok(bytes)
}

fn ingest(strata: &Path, runs: usize) -> Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    base_project(dir, 2)?;
    write(
        dir,
        "models/sources.yml",
        "version: 2\nsources:\n  - name: app\n    ingest: {type: files}\n    tables:\n      - name: events\n        ingest: {path: \"data/events/*.ndjson\"}\n",
    )?;
    let bytes = ndjson_files(dir, 1024)?;
    let lake = dir.join(".strata");
    let (median, min) = measure(runs, || {
        let _ = std::fs::remove_dir_all(&lake);
        time_strata(strata, dir, &["ingest"])
    })?;
    let mut rows = vec![Row {
        scenario: "ingest: ndjson files into bronze".into(),
        size: format!("{} MiB", bytes >> 20),
        median,
        min,
        note: format!(
            "{} files, 6 columns, first load (target < 30 s); {:.0} MiB/s",
            std::fs::read_dir(dir.join("data/events"))?.count(),
            (bytes >> 20) as f64 / median.as_secs_f64()
        ),
    }];
    // Loaded: nothing new to read.
    let (median, min) = measure(runs, || time_strata(strata, dir, &["ingest"]))?;
    rows.push(Row {
        scenario: "ingest: again, no new files".into(),
        size: format!("{} MiB", bytes >> 20),
        median,
        min,
        note: "listing and the ledger only (target < 1 s)".into(),
    });
    Ok(rows)
}
