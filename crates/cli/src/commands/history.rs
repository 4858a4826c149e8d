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
    let _lock = crate::context::lock_target(&project, global, "rollback")?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let new_version = warehouse.rollback(&relation, args.to_version).await?;
    Console::new(global).info(&format!(
        "{} now holds version {} again (as its new version {new_version})",
        args.model, args.to_version
    ));
    Ok(ExitCode::SUCCESS)
}

/// Options of `strata optimize`.
#[derive(Debug, Args)]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub select: crate::SelectArgs,
}

/// Options of `strata vacuum`.
#[derive(Debug, Args)]
pub struct VacuumArgs {
    #[command(flatten)]
    pub select: crate::SelectArgs,
    /// Keep files needed by versions newer than this many hours (at least the table's
    /// retention, 168 hours by default; shorter is refused).
    #[arg(long)]
    pub retain_hours: Option<i64>,
    /// List the files that would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The selected table models and seeds: (name, relation, cluster_by columns).
fn selected_tables(
    project: &strata_project::Project,
    select: &crate::SelectArgs,
) -> Result<Vec<(String, strata_project::Relation, Vec<String>)>> {
    let chosen = crate::context::select(project, select)?;
    Ok(project
        .nodes()
        .filter(|n| chosen.contains(n.unique_id()) && matches!(n.materialized(), "table" | "seed"))
        .map(|n| {
            let cluster = match n.config().get("cluster_by") {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            (n.name().to_string(), n.relation().clone(), cluster)
        })
        .collect())
}

/// `strata optimize`: compact the selected tables (z-ordered by `cluster_by` when set).
pub async fn optimize(global: &GlobalArgs, args: &OptimizeArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let _lock = crate::context::lock_target(&project, global, "optimize")?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let console = Console::new(global);
    for (name, relation, cluster) in selected_tables(&project, &args.select)? {
        match warehouse.optimize(&relation, cluster).await {
            Ok((added, removed)) => {
                console.info(&format!("{name}: {removed} files compacted into {added}"))
            }
            Err(e) => console.info(&format!("{name}: skipped: {e}")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata vacuum`: delete files no recent version needs.
pub async fn vacuum(global: &GlobalArgs, args: &VacuumArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let _lock = crate::context::lock_target(&project, global, "vacuum")?;
    let (warehouse, _meta) = open_warehouse(&project)?;
    let console = Console::new(global);
    for (name, relation, _) in selected_tables(&project, &args.select)? {
        let files = warehouse
            .vacuum(&relation, args.retain_hours, args.dry_run)
            .await?;
        console.info(&format!(
            "{name}: {} file{} {}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if args.dry_run {
                "would be deleted"
            } else {
                "deleted"
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}
