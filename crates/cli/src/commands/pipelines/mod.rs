//! `strata pipelines`, `strata trigger` and `strata runs`: the project's pipelines
//! (`pipelines/*.yml`, see `strata_orchestrator`), running one now, and the record of runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use strata_meta::MetaStore;
use strata_meta::pipelines::{PipelineRunRecord, StepAttemptRecord};
use strata_orchestrator::execute::{self, AttemptEnd, Quiet};
use strata_orchestrator::pipeline::{self, Action, Pipeline, Sensor, show_duration};
use strata_orchestrator::scheduler::{self};
use strata_orchestrator::{Launch, Observer, Runner, Status, Step, Trigger};

use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

mod schedule;
mod step;

pub use schedule::{BackfillArgs, SchedulerArgs, backfill, scheduler};
pub use step::{ExportCommand, StepArgs, export, step};

/// Options of `strata trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The pipeline (its `name`, or its file's name under pipelines/).
    pub pipeline: String,
    /// Queue the run for the target's running `strata scheduler` instead, and return.
    #[arg(long)]
    pub detach: bool,
}

/// Options of `strata runs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    /// Only this pipeline's runs.
    pub pipeline: Option<String>,
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Text (a table) or JSON.
    #[arg(long, short = 'o', value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
}

/// `strata runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run: each step's attempts with their status, times, exit code and message, and the
    /// end of a failed attempt's output.
    Show {
        /// The run's number (from `strata runs`).
        id: i64,
        /// Text or JSON.
        #[arg(long, short = 'o', value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
}

/// `strata pipelines`: list the pipelines, checking each (a mistake is an error naming its
/// file and line).
pub async fn list(global: &GlobalArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let pipelines = pipeline::load(&project.root)?;
    if pipelines.is_empty() {
        println!("No pipelines: add one as pipelines/<name>.yml (see `strata trigger --help`).");
        return Ok(ExitCode::SUCCESS);
    }
    let meta = open_meta(&project)?;
    println!(
        "{:<20} {:<34} {:>5}  last run",
        "pipeline", "schedule", "steps"
    );
    for p in &pipelines {
        let schedule = match &p.schedule {
            None => "manual".to_string(),
            Some(s) => {
                let mut parts = Vec::new();
                if let Some(c) = &s.cron {
                    parts.push(format!("{c} ({})", s.timezone));
                }
                if !s.after.is_empty() {
                    parts.push(format!("after {}", s.after.join(", ")));
                }
                parts.join("; ")
            }
        };
        let last = meta
            .pipeline_runs(Some(&p.name), 1)?
            .into_iter()
            .next()
            .map(|r| format!("#{} {} at {}", r.id, r.status, r.started_at))
            .unwrap_or_else(|| "never".into());
        println!(
            "{:<20} {:<34} {:>5}  {last}",
            p.name,
            schedule,
            p.steps.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How each step starts: this binary, in the project folder, with the options given here.
fn launch(global: &GlobalArgs, root: PathBuf) -> Result<Launch> {
    let strata = std::env::current_exe()
        .map_err(|e| anyhow!("cannot find the strata binary to run steps with: {e}"))?;
    let mut global_args = vec!["--project-dir".to_string(), root.display().to_string()];
    if let Some(p) = &global.profiles_dir {
        global_args.extend(["--profiles-dir".into(), p.display().to_string()]);
    }
    if let Some(t) = &global.target {
        global_args.extend(["--target".into(), t.clone()]);
    }
    if let Some(p) = &global.profile {
        global_args.extend(["--profile".into(), p.clone()]);
    }
    global_args.extend(["--lock-timeout".into(), global.lock_timeout.to_string()]);
    Ok(Launch {
        project_dir: root,
        strata,
        global_args,
        vars: global.vars.clone(),
    })
}

/// Prints one line as each attempt starts and ends.
struct Lines {
    console: Console,
}

impl Observer for Lines {
    fn attempt_started(&self, pipeline: &str, step: &Step, attempt: u32) {
        let of = match step.retries {
            0 => String::new(),
            r => format!(" (attempt {attempt} of {})", r + 1),
        };
        self.console.info(&format!(
            "{}: {} started{of}: {}",
            pipeline,
            step.name,
            what(step)
        ));
    }

    fn attempt_ended(
        &self,
        pipeline: &str,
        step: &Step,
        attempt: u32,
        end: &AttemptEnd,
        retry_in: Option<Duration>,
    ) {
        let took = format!("{:.1}s", end.seconds);
        let text = match end.status {
            Status::Success => format!("{}: {} succeeded in {took}", pipeline, step.name),
            status => {
                let again = match retry_in {
                    Some(wait) => format!("; attempt {} in {}", attempt + 1, show_duration(wait)),
                    None if attempt > 1 => format!("; {attempt} attempts, no retries left"),
                    None => String::new(),
                };
                format!(
                    "{}: {} {} after {took}: {}{again}",
                    pipeline,
                    step.name,
                    match status {
                        Status::TimedOut => "timed out",
                        _ => "failed",
                    },
                    end.message
                )
            }
        };
        self.console.info(&text);
    }

    fn note(&self, text: &str) {
        self.console.info(text);
    }

    fn step_skipped(&self, pipeline: &str, step: &Step, why: &str) {
        self.console
            .info(&format!("{}: {} skipped: {why}", pipeline, step.name));
    }
}

/// What a step does, in a few words.
fn what(step: &Step) -> String {
    match &step.action {
        Action::Command(c) => format!("`{c}`"),
        Action::Ingest { select } => format!(
            "strata ingest{}",
            select
                .as_ref()
                .map(|s| format!(" --select {s}"))
                .unwrap_or_default()
        ),
        Action::Strata {
            command, select, ..
        } => format!(
            "strata {command}{}",
            select
                .as_ref()
                .map(|s| format!(" --select {s}"))
                .unwrap_or_default()
        ),
        Action::Sensor(Sensor::Files(g)) => format!("waiting for files {g}"),
        Action::Sensor(Sensor::Sql(q)) => format!("waiting until {q}"),
        Action::Sensor(Sensor::Freshness(s)) => format!(
            "waiting for fresh sources{}",
            s.as_ref().map(|s| format!(" {s}")).unwrap_or_default()
        ),
    }
}

/// `strata trigger PIPELINE`: run it now, here; exit code 1 when the run fails.
pub async fn trigger(global: &GlobalArgs, args: &TriggerArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let pipeline: Pipeline = pipeline::find(&project.root, &args.pipeline)?;
    let all = pipeline::load(&project.root)?;
    let meta = open_meta(&project)?;
    let console = Console::new(global);
    if args.detach {
        let id = meta.queue_pipeline_run(
            &pipeline.name,
            Trigger::Manual.as_str(),
            &chrono::Utc::now().to_rfc3339(),
        )?;
        // Taking the scheduler's lock tells whether a scheduler runs.
        let idle = crate::context::scheduler_lock(&project, "strata trigger --detach")?.is_ok();
        println!(
            "{}: run {id} queued{}",
            pipeline.name,
            match idle {
                true =>
                    "; no scheduler runs on this target now: the next `strata scheduler` starts it",
                false => " for the running scheduler (`strata runs show ID` follows it)",
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    console.info(&format!(
        "{}: {} steps, triggered by hand on target {}",
        pipeline.name,
        pipeline.steps.len(),
        project.target.name
    ));
    let observer: Arc<dyn Observer> = match global.quiet {
        true => Arc::new(Quiet),
        false => Arc::new(Lines {
            console: Console::new(global),
        }),
    };
    let runner = Runner {
        meta,
        launch: launch(global, project.root.clone())?,
        observer,
        followers: scheduler::followers(&all),
        owner: execute::owner(""),
    };
    let summary = runner
        .run(&pipeline, Trigger::Manual, None)
        .await
        .map_err(|e| anyhow!(e))?;
    let failed: Vec<&str> = summary
        .steps
        .iter()
        .filter(|(_, s, _)| !matches!(s, Status::Success | Status::Skipped))
        .map(|(n, _, _)| n.as_str())
        .collect();
    let line = format!(
        "{}: run {} {} in {:.1}s{}",
        pipeline.name,
        summary.run_id,
        summary.status,
        summary.seconds,
        match failed.is_empty() {
            true => String::new(),
            false => format!(
                " ({} did not succeed; see `strata runs show {}`)",
                failed.join(", "),
                summary.run_id
            ),
        }
    );
    // The outcome is printed even with --quiet.
    println!("{line}");
    Ok(match summary.status {
        "success" => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// The target's metadata store, with the runs a killed `strata trigger` left `running`
/// marked interrupted (and what their steps left running stopped).
pub(super) fn open_meta(project: &strata_project::Project) -> Result<Arc<MetaStore>> {
    let meta = crate::context::open_meta(project)?;
    execute::reap_abandoned_runs(&meta).map_err(|e| anyhow!(e))?;
    Ok(meta)
}

/// `strata runs [PIPELINE]` and `strata runs show ID`.
pub async fn runs(global: &GlobalArgs, args: &RunsArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let meta = open_meta(&project)?;
    if let Some(RunsCommand::Show { id, output }) = &args.command {
        return show(&meta, *id, output);
    }
    if let Some(name) = &args.pipeline {
        // A name that is no pipeline is most likely a typo.
        pipeline::find(&project.root, name)?;
    }
    let runs = meta.pipeline_runs(args.pipeline.as_deref(), args.limit)?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("No pipeline runs yet: `strata trigger PIPELINE` runs one now.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5}  {:<20} {:<9} {:<11} {:<24} {:>9}  interval",
        "run", "pipeline", "trigger", "status", "started", "took"
    );
    for r in &runs {
        println!(
            "{:>5}  {:<20} {:<9} {:<11} {:<24} {:>9}  {}",
            r.id,
            r.pipeline,
            r.trigger,
            r.status,
            r.started_at,
            took(r),
            match (&r.interval_start, &r.interval_end) {
                (Some(s), Some(e)) => format!("{s} – {e}"),
                _ => String::new(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn took(r: &PipelineRunRecord) -> String {
    seconds_between(&r.started_at, r.finished_at.as_deref())
        .map(|s| format!("{s:.1}s"))
        .unwrap_or_else(|| "-".into())
}

fn seconds_between(start: &str, end: Option<&str>) -> Option<f64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end?).ok()?;
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

fn show(meta: &MetaStore, id: i64, output: &str) -> Result<ExitCode> {
    let Some((run, steps)) = meta.pipeline_run(id)? else {
        bail!("there is no pipeline run {id}: `strata runs` lists them");
    };
    if output == "json" {
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            run: &'a PipelineRunRecord,
            steps: &'a [StepAttemptRecord],
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Shown {
                run: &run,
                steps: &steps
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run {} of {}: {} ({}), started {} by {}, took {}",
        run.id,
        run.pipeline,
        run.status,
        run.trigger,
        run.started_at,
        run.owner,
        took(&run)
    );
    if let (Some(s), Some(e)) = (&run.interval_start, &run.interval_end) {
        println!("interval: {s} – {e}");
    }
    println!(
        "\n{:<20} {:>7}  {:<11} {:>8}  {:>4}  message",
        "step", "attempt", "status", "took", "exit"
    );
    for s in &steps {
        println!(
            "{:<20} {:>7}  {:<11} {:>8}  {:>4}  {}",
            s.step,
            match s.attempt {
                0 => "-".to_string(),
                n => n.to_string(),
            },
            s.status,
            seconds_between(&s.started_at, s.finished_at.as_deref())
                .map(|x| format!("{x:.1}s"))
                .unwrap_or_else(|| "-".into()),
            s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            s.message.as_deref().unwrap_or("")
        );
    }
    // The end of each failed attempt's output.
    for s in steps
        .iter()
        .filter(|s| matches!(s.status.as_str(), "failed" | "timed_out"))
    {
        let log = s.log.as_deref().unwrap_or("").trim_end();
        if log.is_empty() {
            continue;
        }
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(20);
        println!(
            "\n--- {} attempt {}: the end of its output ---",
            s.step, s.attempt
        );
        for l in &lines[from..] {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
