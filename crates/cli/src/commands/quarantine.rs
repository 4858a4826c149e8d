//! `strata quarantine list|retry`: the rows models set aside with their `quarantine:` checks,
//! and writing them to their model once they pass.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use datafusion::arrow::array::RecordBatch;
use futures::TryStreamExt;
use strata_engine::Warehouse;

use crate::GlobalArgs;
use crate::context::{load_project, open_warehouse};
use crate::report::Console;

/// `strata quarantine` subcommands.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// The rows each model set aside, by failed check; with MODEL, the rows themselves too.
    List {
        /// A model with `quarantine:` checks (all of them when left out).
        model: Option<String>,
        /// Rows of MODEL to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Judge MODEL's quarantined rows by its current checks (after a fix to the checks or
    /// the data): rows that pass are written to the model and leave the quarantine.
    Retry {
        /// The model.
        model: String,
    },
}

/// The models with `quarantine:` checks, or the one named.
fn quarantined_models<'p>(
    project: &'p strata_project::Project,
    name: Option<&str>,
) -> Result<Vec<&'p strata_project::Model>> {
    let all: Vec<&strata_project::Model> = project
        .models
        .values()
        .filter(|m| m.config.get(strata_project::quarantine::KEY).is_some())
        .collect();
    let Some(name) = name else {
        return Ok(all);
    };
    if let Some(m) = all.iter().find(|m| m.name == name) {
        return Ok(vec![m]);
    }
    if project.model_by_name(name).is_some() {
        bail!("model `{name}` has no `quarantine:` checks, so it sets no rows aside");
    }
    bail!(
        "no model named `{name}`{}",
        strata_common::did_you_mean(name, project.models.values().map(|m| m.name.as_str()))
    )
}

/// Run the command.
pub async fn quarantine(global: &GlobalArgs, command: &QuarantineCommand) -> Result<ExitCode> {
    let project = load_project(global)?;
    match command {
        QuarantineCommand::List { model, limit } => list(&project, model.as_deref(), *limit).await,
        QuarantineCommand::Retry { model } => retry(global, &project, model).await,
    }
}

async fn list(
    project: &strata_project::Project,
    name: Option<&str>,
    limit: usize,
) -> Result<ExitCode> {
    let models = quarantined_models(project, name)?;
    if models.is_empty() {
        println!("No model has `quarantine:` checks.");
        return Ok(ExitCode::SUCCESS);
    }
    let (warehouse, _meta) = open_warehouse(project)?;
    println!(
        "{:<28}  {:<36}  {:>9}  last set aside",
        "model", "check", "rows"
    );
    let mut shown = Vec::new();
    for m in &models {
        let q = strata_project::quarantine::relation(&m.relation);
        let Some(source) = warehouse.quarantine_sql(&m.relation, &q).await? else {
            println!("{:<28}  {:<36}  {:>9}", m.name, "-", 0);
            continue;
        };
        let sql = format!(
            "select strata_failed_checks, count(*), cast(max(strata_quarantined_at) as varchar) \
             from {source} group by 1 order by 1"
        );
        let batches = collect(&warehouse, &sql).await?;
        let mut any = false;
        for b in &batches {
            for row in 0..b.num_rows() {
                any = true;
                let cell = |c: usize| {
                    datafusion::arrow::util::display::array_value_to_string(b.column(c), row)
                        .unwrap_or_default()
                };
                println!(
                    "{:<28}  {:<36}  {:>9}  {}",
                    m.name,
                    cell(0),
                    cell(1),
                    cell(2)
                );
            }
        }
        if !any {
            println!("{:<28}  {:<36}  {:>9}", m.name, "-", 0);
        } else if name.is_some() {
            shown.push(format!(
                "select * from {source} order by strata_quarantined_at desc limit {limit}"
            ));
        }
    }
    for sql in shown {
        let batches = collect(&warehouse, &sql).await?;
        println!();
        println!(
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)?
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(
    global: &GlobalArgs,
    project: &strata_project::Project,
    name: &str,
) -> Result<ExitCode> {
    let models = quarantined_models(project, Some(name))?;
    let Some(model) = models.first() else {
        bail!("no model named `{name}`");
    };
    let _lock = crate::context::lock_target(project, global, "quarantine retry")?;
    let (warehouse, _meta) = open_warehouse(project)?;
    let Some((template, quarantine)) =
        strata_runner::quarantine_request(model, &project.invocation_id)
    else {
        bail!(
            "model `{name}` cannot take quarantined rows back (it is not a table or incremental model)"
        );
    };
    let done = warehouse.retry_quarantined(&template, &quarantine).await?;
    Console::new(global).info(&format!(
        "{}: {} row{} now pass and {} written to {}; {} still fail and stay in {}",
        model.name,
        done.moved,
        if done.moved == 1 { "" } else { "s" },
        if done.moved == 1 { "was" } else { "were" },
        model.relation,
        done.remaining,
        quarantine.relation
    ));
    Ok(ExitCode::SUCCESS)
}

async fn collect(
    warehouse: &strata_engine::EmbeddedWarehouse,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    Ok(warehouse.query(sql, None).await?.try_collect().await?)
}
