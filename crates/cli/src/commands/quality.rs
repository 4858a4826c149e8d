//! `strata quality report`: the history of every check as one HTML page (see
//! `strata_quality::report`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::GlobalArgs;
use crate::context::{load_project, open_warehouse};
use crate::report::Console;

/// `strata quality` subcommands.
#[derive(Debug, Subcommand)]
pub enum QualityCommand {
    /// Write the quality report: per model, seed, snapshot and source table, each test's
    /// latest result and history, each measured metric's trend with its expected range, the
    /// latest failures with the rows they found, and quarantined rows. One self-contained HTML
    /// file (no script, nothing fetched), to open from disk or publish.
    Report {
        /// The folder to write index.html to (default: the project's target/quality).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Run the command.
pub async fn quality(global: &GlobalArgs, command: &QualityCommand) -> Result<ExitCode> {
    let QualityCommand::Report { out } = command;
    let project = load_project(global)?;
    let (warehouse, meta) = open_warehouse(&project)?;
    let (html, nodes) = strata_quality::report::page(&project, &meta, &warehouse).await?;
    let dir = out
        .clone()
        .unwrap_or_else(|| project.target_dir().join("quality"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("index.html");
    std::fs::write(&file, html).with_context(|| format!("cannot write {}", file.display()))?;
    let tests: usize = nodes.iter().map(|n| n.tests.len()).sum();
    let metrics: usize = nodes.iter().map(|n| n.metrics.len()).sum();
    Console::new(global).info(&format!(
        "Wrote {} ({} nodes, {tests} tests, {metrics} metrics)",
        file.display(),
        nodes.len()
    ));
    Ok(ExitCode::SUCCESS)
}
