//! `strata datagen`: synthetic data for the example projects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use strata_datagen::{retail, saas};

use crate::GlobalArgs;
use crate::report::Console;

#[derive(Debug, Subcommand)]
pub enum DatagenCommand {
    /// A SaaS product (seed 001): user_profiles, subscriptions, transactions and user_events
    /// as JSON files, one object per line. Scale 1 is about 1,000 accounts over 2024–2025.
    Saas(SaasArgs),
    /// A retailer's operational database (seeds 000, 002, 003): customers (whose segment
    /// changes), products, stores, orders, order items, web events, POS transactions and daily
    /// inventory. Day 0 is the database at 2025-06-30 (scale 1: 1,000 customers, 5,000
    /// orders, 10,000 items, 50,000 events); `--day K` is the changes of the K-th day after.
    /// Written as CSV files under OUT/day_KKK/, or into PostgreSQL with --to.
    Retail(RetailArgs),
}

#[derive(Debug, Args)]
pub struct RetailArgs {
    /// How much data: 1 is 1,000 customers and about 5,000 orders at day 0.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// The random seed: the same seed, scale and day give the same rows.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// 0: the database at day 0; K: the changes of day K (new and changed rows), to apply
    /// after days 0..K-1.
    #[arg(long, default_value_t = 0)]
    pub day: u32,
    /// The folder for CSV files (one per table, under OUT/day_KKK/).
    #[arg(long, default_value = "data/raw", conflicts_with = "to")]
    pub out: PathBuf,
    /// Write into this PostgreSQL database instead (postgresql://user@host:port/db; the
    /// password from PGPASSWORD): day 0 creates the tables, a day K upserts its rows; each
    /// day is one transaction.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The schema the tables are in, with --to.
    #[arg(long, default_value = "shop", requires = "to")]
    pub schema: String,
    /// With --to at day 0: drop the tables first if they exist.
    #[arg(long, requires = "to")]
    pub reset: bool,
}

#[derive(Debug, Args)]
pub struct SaasArgs {
    /// How much data: 1 is about 1,000 accounts; 10 and 100 ten and a hundred times that
    /// (fractions work too).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// The folder to write into (created if missing; its data files are replaced).
    #[arg(long, default_value = "data/raw")]
    pub out: PathBuf,
    /// The random seed: the same seed and scale give the same files, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub async fn datagen(global: &GlobalArgs, command: &DatagenCommand) -> Result<ExitCode> {
    match command {
        DatagenCommand::Saas(args) => {
            generate_saas(global, args)?;
            Ok(ExitCode::SUCCESS)
        }
        DatagenCommand::Retail(args) => {
            generate_retail(global, args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_scale(scale: f64) -> Result<()> {
    if !(scale > 0.0 && scale <= 10_000.0) {
        bail!(
            "--scale {scale} is out of range\n  hint: give a number above 0 and at most 10000, e.g. --scale 1"
        );
    }
    Ok(())
}

/// Write a day of the retail data set, as files or into PostgreSQL.
pub async fn generate_retail(global: &GlobalArgs, args: &RetailArgs) -> Result<()> {
    check_scale(args.scale)?;
    if !args
        .schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || args.schema.is_empty()
    {
        bail!(
            "--schema `{}` must be a plain name (letters, digits, _)",
            args.schema
        );
    }
    let console = Console::new(global);
    let options = retail::RetailOptions {
        scale: args.scale,
        seed: args.seed,
    };
    let tmp;
    let dir = match &args.to {
        Some(_) => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
        None => retail::day_dir(&args.out, args.day),
    };
    let bar = console.live().then(|| {
        let bar = ProgressBar::new(retail::TABLES.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let started = Instant::now();
    let summary = retail::generate(&options, args.day, &dir, &mut |table| {
        if let Some(bar) = &bar {
            bar.inc(1);
            bar.set_message(format!("writing {table}"));
        }
    })?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let counts: Vec<String> = summary
        .rows
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    let what = if args.day == 0 {
        "day 0".to_string()
    } else {
        format!("the changes of day {}", args.day)
    };
    let Some(url) = &args.to else {
        console.info(&format!(
            "Wrote {what} ({}): {} to {} in {:.2}s",
            retail::date_of(args.day as i64),
            counts.join(", "),
            dir.display(),
            started.elapsed().as_secs_f64()
        ));
        return Ok(());
    };
    let mut client = strata_ingest::postgres::connect_url(url).await?;
    let schema = &args.schema;
    let exists =
        strata_ingest::postgres::load::table_exists(&client, &format!("{schema}.orders")).await?;
    let mut setup = String::new();
    if args.day == 0 {
        if exists && !args.reset {
            bail!(
                "{schema}.orders already exists in that database\n  hint: `--day 1` (then 2, 3, …) adds the next days' changes; `--reset` drops the tables and writes day 0 again"
            );
        }
        setup.push_str(&format!("create schema if not exists {schema};\n"));
        for t in retail::TABLES {
            setup.push_str(&format!(
                "drop table if exists {schema}.{};\n{};\n",
                t.name,
                t.create_sql(schema)
            ));
        }
    } else if !exists {
        bail!(
            "{schema}.orders does not exist in that database\n  hint: write day 0 first: `strata datagen retail --to URL`"
        );
    }
    let loads: Vec<strata_ingest::postgres::load::CsvLoad> = retail::TABLES
        .iter()
        .map(|t| strata_ingest::postgres::load::CsvLoad {
            table: format!("{schema}.{}", t.name),
            columns: t.columns.iter().map(|(c, _)| c.to_string()).collect(),
            file: dir.join(format!("{}.csv", t.name)),
            upsert: (args.day > 0).then(|| t.upsert_sql(schema, "{from}")),
        })
        .collect();
    strata_ingest::postgres::load::load_csv(&mut client, &setup, &loads).await?;
    console.info(&format!(
        "Wrote {what} ({}) into {schema}: {} in {:.2}s",
        retail::date_of(args.day as i64),
        counts.join(", "),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Write the SaaS data set, with a progress bar on a terminal and a one-line summary.
pub fn generate_saas(global: &GlobalArgs, args: &SaasArgs) -> Result<saas::SaasSummary> {
    check_scale(args.scale)?;
    let console = Console::new(global);
    let options = saas::SaasOptions {
        scale: args.scale,
        seed: args.seed,
    };
    let bar = console.live().then(|| {
        let bar = ProgressBar::new(options.accounts());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} accounts {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let started = Instant::now();
    let summary = saas::generate(&options, &args.out, &mut |done, _| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    console.info(&format!(
        "Wrote {} accounts, {} subscriptions, {} transactions and {} events ({:.1} MiB) to {} in {secs:.2}s",
        summary.accounts,
        summary.subscriptions,
        summary.transactions,
        summary.events,
        summary.bytes as f64 / (1024.0 * 1024.0),
        args.out.display(),
    ));
    Ok(summary)
}
