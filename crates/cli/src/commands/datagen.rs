//! `strata datagen`: synthetic data for the example projects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use strata_datagen::saas;

use crate::GlobalArgs;
use crate::report::Console;

#[derive(Debug, Subcommand)]
pub enum DatagenCommand {
    /// A SaaS product (seed 001): user_profiles, subscriptions, transactions and user_events
    /// as JSON files, one object per line. Scale 1 is about 1,000 accounts over 2024–2025.
    Saas(SaasArgs),
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

pub fn datagen(global: &GlobalArgs, command: &DatagenCommand) -> Result<ExitCode> {
    match command {
        DatagenCommand::Saas(args) => {
            generate_saas(global, args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Write the SaaS data set, with a progress bar on a terminal and a one-line summary.
pub fn generate_saas(global: &GlobalArgs, args: &SaasArgs) -> Result<saas::SaasSummary> {
    if !(args.scale > 0.0 && args.scale <= 10_000.0) {
        bail!(
            "--scale {} is out of range\n  hint: give a number above 0 and at most 10000, e.g. --scale 1",
            args.scale
        );
    }
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
