//! `strata history` and `strata rollback`: the versions of a table model, and going back to one.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use crate::GlobalArgs;
use crate::context::{load_project, open_warehouse};
use crate::report::Console;

/// Options of `strata history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The model (a table) whose versions to list.
    pub model: String,
    /// At most this many versions, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `strata rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The model (a table) to roll back.
    pub model: String,
    /// The version to make current again (see `strata history`).
    #[arg(long)]
    pub to_version: u64,
}

fn relation_of(project: &strata_project::Project, name: &str) -> Result<strata_project::Relation> {
    match project.nodes().find(|n| n.name() == name) {
        Some(n) => Ok(n.relation().clone()),
        None => {
            let names: Vec<&str> = project.nodes().map(|n| n.name()).collect();
            bail!(
                "no model or seed named `{name}`{}",
                strata_common::did_you_mean(name, names.iter().copied())
            )
        }
    }
}

/// `strata history <model>`.
pub async fn history(global: &GlobalArgs, args: &HistoryArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let relation = relation_of(&project, &args.model)?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let versions = warehouse.history(&relation).await?;
    let versions: Vec<_> = versions.into_iter().take(args.limit).collect();
    if args.json {
        println!("{}", serde_json::to_string(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>7}  {:<20}  {:<10}  {:>12}  run",
        "version", "time", "operation", "rows written"
    );
    for v in versions {
        println!(
            "{:>7}  {:<20}  {:<10}  {:>12}  {}",
            v.version,
            v.timestamp.unwrap_or_default(),
            v.operation,
            v.rows_written.map(|r| r.to_string()).unwrap_or_default(),
            v.run_id.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata rollback <model> --to-version N`.
pub async fn rollback(global: &GlobalArgs, args: &RollbackArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let relation = relation_of(&project, &args.model)?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let new_version = warehouse.rollback(&relation, args.to_version).await?;
    Console::new(global).info(&format!(
        "{} now holds version {} again (as its new version {new_version})",
        args.model, args.to_version
    ));
    Ok(ExitCode::SUCCESS)
}
