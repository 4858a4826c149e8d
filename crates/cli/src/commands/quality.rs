//! `strata quality report`: the history of every check as one HTML page (see
//! `strata_quality::report`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use strata_engine::Warehouse;

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
    let mut nodes = strata_quality::report::gather(&project, &meta)?;
    for model in project
        .models
        .values()
        .filter(|m| m.config.get(strata_project::quarantine::KEY).is_some())
    {
        let q = strata_project::quarantine::relation(&model.relation);
        let Some(source) = warehouse.quarantine_sql(&model.relation, &q).await? else {
            continue;
        };
        let sql = format!(
            "select strata_failed_checks, count(*) from {source} group by 1 order by 2 desc"
        );
        let batches: Vec<datafusion::arrow::array::RecordBatch> =
            warehouse.query(&sql, None).await?.try_collect().await?;
        let mut counts = Vec::new();
        for b in &batches {
            let checks = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )?;
            let (Some(checks), Some(rows)) = (
                checks.as_string_opt::<i32>(),
                b.column(1).as_primitive_opt::<Int64Type>(),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                if checks.is_valid(i) {
                    counts.push((checks.value(i).to_string(), rows.value(i).max(0) as u64));
                }
            }
        }
        if counts.is_empty() {
            continue;
        }
        match nodes.iter_mut().find(|n| n.unique_id == model.unique_id) {
            Some(n) => n.quarantined = counts,
            None => nodes.push(strata_quality::report::NodeReport {
                unique_id: model.unique_id.clone(),
                name: model.name.clone(),
                resource_type: "model".into(),
                relation: format!("{}.{}", model.relation.schema, model.relation.identifier),
                tests: Vec::new(),
                metrics: Vec::new(),
                quarantined: counts,
            }),
        }
    }
    let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let title = format!("{} ({})", project.config.name, project.target.name);
    let html = strata_quality::report::render(&title, &generated, &nodes);
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
