//! `strata metrics list|query`: the metrics of `metrics/*.yml`, and one answered by name (see
//! `strata_server::metrics`).

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use strata_engine::Warehouse;
use strata_project::compile::Compiler;
use strata_server::metrics::{Grain, Query};

use super::show::{ShowOutput, print_batches};
use crate::GlobalArgs;
use crate::context::{load_project, open_warehouse};

/// `strata metrics` subcommands.
#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// List the metrics: name, label, model, measure, time column and grains, dimensions.
    List,
    /// Answer a metric: its value in total, or by a grain of its time column and by its
    /// dimensions, computed as its definition says.
    Query {
        /// The metric (its name or label).
        metric: String,
        /// A grain of the metric's time column: day, week, month, quarter or year.
        #[arg(long)]
        by: Option<String>,
        /// A dimension to break it down by (repeat for more).
        #[arg(long = "dimension")]
        dimensions: Vec<String>,
        /// A SQL condition over the model's columns (repeat for more).
        #[arg(long = "where")]
        filters: Vec<String>,
        /// From this date or time on.
        #[arg(long)]
        start: Option<String>,
        /// Before this date or time.
        #[arg(long)]
        end: Option<String>,
        /// Print the SQL instead of running it.
        #[arg(long)]
        sql: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = ShowOutput::Table)]
        output: ShowOutput,
    },
}

/// Run the command.
pub async fn metrics(global: &GlobalArgs, command: &MetricsCommand) -> Result<ExitCode> {
    let project = std::sync::Arc::new(load_project(global)?);
    let names: Vec<&str> = project
        .models
        .values()
        .map(|m| m.name.as_str())
        .chain(project.seeds.values().map(|s| s.name.as_str()))
        .collect();
    let metrics = strata_server::metrics::load(&project.root, &names)?;
    match command {
        MetricsCommand::List => {
            if metrics.is_empty() {
                println!(
                    "No metrics: define them in {}/*.yml (see `metrics` in the reference).",
                    strata_server::metrics::FOLDER
                );
                return Ok(ExitCode::SUCCESS);
            }
            for m in &metrics {
                let time = match &m.time {
                    Some((c, grains)) => format!(
                        " by {c} ({})",
                        grains
                            .iter()
                            .map(|g| g.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => String::new(),
                };
                let dims: Vec<&str> = m.dimensions.iter().map(|d| d.name.as_str()).collect();
                println!(
                    "{}{}: {} over {}{time}{}",
                    m.name,
                    if m.label != m.name {
                        format!(" ({})", m.label)
                    } else {
                        String::new()
                    },
                    m.measure,
                    m.model,
                    if dims.is_empty() {
                        String::new()
                    } else {
                        format!("; dimensions: {}", dims.join(", "))
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MetricsCommand::Query {
            metric,
            by,
            dimensions,
            filters,
            start,
            end,
            sql,
            output,
        } => {
            let m = strata_server::metrics::find(&metrics, metric).map_err(|e| anyhow!(e))?;
            let grain = match by {
                None => None,
                Some(g) => Some(
                    Grain::parse(g)
                        .ok_or_else(|| anyhow!("`--by {g}`: the grains are {}", Grain::names()))?,
                ),
            };
            let query = Query {
                grain,
                dimensions: dimensions.clone(),
                filters: filters.clone(),
                start: start.clone(),
                end: end.clone(),
            };
            let text = m.sql(&query).map_err(|e| anyhow!(e))?;
            let (warehouse, _meta) = open_warehouse(&project)?;
            let mut compiler =
                Compiler::new(project.clone()).with_introspector(warehouse.introspector());
            let compiled = compiler.compile_inline(&text)?;
            if *sql {
                println!("{compiled}");
                return Ok(ExitCode::SUCCESS);
            }
            let label = format!("metric `{}`", m.name);
            let stream = warehouse
                .query(&compiled, None)
                .await
                .map_err(|e| anyhow!("{label}: {e}"))?;
            let schema = stream.schema();
            let mut batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| {
                anyhow!(
                    "{label}: {}",
                    strata_engine::error::describe_datafusion_error(&e)
                )
            })?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                batches = vec![RecordBatch::new_empty(schema.clone())];
            }
            print_batches(&batches, &schema, *output, &m.name)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
