//! `strata step` (one attempt of one step, as an Airflow task runs it) and `strata export
//! airflow`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use strata_orchestrator::execute;
use strata_orchestrator::pipeline::{self, Action};
use strata_orchestrator::{Status, Step};

use super::launch;
use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

/// Options of `strata step`.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// The pipeline.
    pub pipeline: String,
    /// The step.
    pub step: String,
}

/// `strata step PIPELINE STEP`: one attempt of one step, as an Airflow task runs it (its data
/// interval from STRATA_INTERVAL_START and STRATA_INTERVAL_END); its output, then exit code 1
/// when it did not succeed.
pub async fn step(global: &GlobalArgs, args: &StepArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let pipeline = pipeline::find(&project.root, &args.pipeline)?;
    let Some(step) = pipeline.steps.iter().find(|s| s.name == args.step) else {
        bail!(
            "pipeline `{}` has no step `{}`{}",
            pipeline.name,
            args.step,
            strata_common::did_you_mean(&args.step, pipeline.steps.iter().map(|s| s.name.as_str()))
        );
    };
    let time = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        match std::env::var(name) {
            Err(_) => Ok(None),
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => chrono::DateTime::parse_from_rfc3339(&text.trim().replacen(' ', "T", 1))
                .map(|t| Some(t.with_timezone(&chrono::Utc)))
                .map_err(|_| {
                    anyhow!("{name} `{text}` is not a time such as 2024-01-01T06:00:00+00:00")
                }),
        }
    };
    let interval = match (time("STRATA_INTERVAL_START")?, time("STRATA_INTERVAL_END")?) {
        (Some(start), Some(end)) => Some(strata_orchestrator::Interval { start, end }),
        _ => None,
    };
    let end = execute::run_once(
        &pipeline.name,
        step,
        &launch(global, project.root.clone())?,
        interval,
    )
    .await;
    print!("{}", end.log);
    if !end.log.is_empty() && !end.log.ends_with('\n') {
        println!();
    }
    let console = Console::new(global);
    console.info(&format!(
        "{}: {} {} in {:.1}s{}",
        pipeline.name,
        step.name,
        end.status.as_str(),
        end.seconds,
        match end.status {
            Status::Success => String::new(),
            _ => format!(": {}", end.message),
        }
    ));
    Ok(match end.status {
        Status::Success => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// `strata export` targets.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a pipeline as an Airflow DAG file (`strata_<pipeline>.py`) whose tasks call this
    /// binary, with the pipeline's schedule, retries, timeouts and dependencies.
    Airflow {
        /// The pipeline.
        pipeline: String,
        /// One task per model, seed and snapshot of each build or run step (in a task group,
        /// following their dependencies), instead of one task per step.
        #[arg(long)]
        per_model: bool,
        /// The folder to write the DAG file to (Airflow's dags folder).
        #[arg(long, default_value = "target/airflow")]
        out: PathBuf,
        /// The DAG's start_date (Airflow runs no interval before it; with `catchup: true`,
        /// every one after it). Default: today with catchup, else 2000-01-01 (Airflow then
        /// runs only the latest interval, and past ones can be tested or backfilled).
        #[arg(long, value_name = "YYYY-MM-DD")]
        start_date: Option<chrono::NaiveDate>,
    },
}

/// `strata export airflow PIPELINE`.
pub async fn export(global: &GlobalArgs, command: &ExportCommand) -> Result<ExitCode> {
    use strata_orchestrator::airflow;
    let ExportCommand::Airflow {
        pipeline: name,
        per_model,
        out,
        start_date,
    } = command;
    let project = load_project(global)?;
    let pipeline = pipeline::find(&project.root, name)?;
    let launch = launch(global, project.root.clone())?;
    let global_args: Vec<String> = launch
        .global_args
        .iter()
        .skip(2) // --project-dir, given apart
        .cloned()
        .collect();
    let target = airflow::Target {
        strata: launch.strata.display().to_string(),
        project: project.root.display().to_string(),
        global_args,
        start_date: match (
            start_date,
            pipeline.schedule.as_ref().is_some_and(|s| s.catchup),
        ) {
            (Some(d), _) => *d,
            (None, true) => chrono::Utc::now().date_naive(),
            (None, false) => chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default(),
        },
    };
    let nodes = |step: &Step| -> Option<airflow::Nodes> {
        if !per_model {
            return None;
        }
        let Action::Strata {
            command,
            select,
            exclude,
            ..
        } = &step.action
        else {
            return None;
        };
        if !matches!(command.as_str(), "build" | "run") {
            return None;
        }
        let args = crate::SelectArgs {
            select: select.iter().cloned().collect(),
            exclude: exclude.iter().cloned().collect(),
            ..Default::default()
        };
        let chosen = crate::context::select(&project, &args).ok()?;
        let mut names = std::collections::BTreeMap::new();
        for id in &chosen {
            let name = if let Some(m) = project.models.get(id) {
                if command == "run" && m.kind.as_str() != "model" {
                    continue;
                }
                if !matches!(m.kind.as_str(), "model" | "snapshot") {
                    continue;
                }
                m.name.clone()
            } else if let Some(s) = project.seeds.get(id) {
                if command == "run" {
                    continue;
                }
                s.name.clone()
            } else {
                continue;
            };
            names.insert(id.clone(), name);
        }
        let nodes = names
            .values()
            .map(|n| {
                (
                    n.clone(),
                    vec![command.clone(), "--select".into(), n.clone()],
                )
            })
            .collect();
        let mut edges = Vec::new();
        for (id, name) in &names {
            for parent in project.graph.parents(id) {
                if let Some(p) = names.get(parent) {
                    edges.push((p.clone(), name.clone()));
                }
            }
        }
        Some(airflow::Nodes { nodes, edges })
    };
    let text = airflow::dag(&pipeline, &target, &nodes);
    let dir = if out.is_absolute() {
        out.clone()
    } else {
        std::env::current_dir()?.join(out)
    };
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.py", airflow::dag_id(&pipeline)));
    std::fs::write(&path, text).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    println!(
        "Wrote {} (DAG `{}`): put it in Airflow's dags folder",
        path.display(),
        airflow::dag_id(&pipeline)
    );
    Ok(ExitCode::SUCCESS)
}
