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
use strata_orchestrator::scheduler::{self, Scheduler};
use strata_orchestrator::{Launch, Observer, Runner, Status, Step, Trigger};

use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

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
    let meta = MetaStore::open(&project.target.metadata)?;
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
    let meta = Arc::new(MetaStore::open(&project.target.metadata)?);
    let console = Console::new(global);
    if args.detach {
        let id = meta.queue_pipeline_run(
            &pipeline.name,
            Trigger::Manual.as_str(),
            &chrono::Utc::now().to_rfc3339(),
        )?;
        // Taking the scheduler's lock tells whether a scheduler runs.
        let idle = strata_meta::TargetLock::acquire_file(
            strata_meta::TargetLock::scheduler_path_for(&project.target.metadata),
            "strata trigger --detach",
            Duration::ZERO,
            |_| {},
        )
        .is_ok();
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

/// Options of `strata scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Pipeline runs at once, over all pipelines (each pipeline's `max_active_runs` holds
    /// too).
    #[arg(long, default_value_t = 4)]
    pub max_runs: usize,
    /// How often to look for due intervals and queued runs.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub tick: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    pipeline::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a duration such as 1s or 500ms"))
}

/// Tells what the scheduler does, one line each.
struct SchedulerLines(Console);

impl scheduler::Events for SchedulerLines {
    fn info(&self, text: &str) {
        self.0.info(text);
    }
}

/// `strata scheduler`: run the project's pipelines on their schedules until Ctrl-C.
pub async fn scheduler(global: &GlobalArgs, args: &SchedulerArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let pipelines = pipeline::load(&project.root)?;
    let lock = strata_meta::TargetLock::acquire_file(
        strata_meta::TargetLock::scheduler_path_for(&project.target.metadata),
        "strata scheduler",
        Duration::ZERO,
        |_| {},
    )
    .map_err(|e| match e {
        strata_meta::LockError::Busy { holder, .. } => anyhow!(
            "a scheduler already runs on target `{}`: {holder}; stop it first (one scheduler per target)",
            project.target.name
        ),
        other => anyhow!(other),
    })?;
    let meta = Arc::new(MetaStore::open(&project.target.metadata)?);
    let console = Console::new(global);
    let scheduled: Vec<String> = pipelines
        .iter()
        .filter_map(|p| {
            let s = p.schedule.as_ref()?;
            let mut when = Vec::new();
            if let Some(c) = &s.cron {
                when.push(format!("{c} {}", s.timezone));
            }
            if !s.after.is_empty() {
                when.push(format!("after {}", s.after.join(", ")));
            }
            Some(format!("{} ({})", p.name, when.join("; ")))
        })
        .collect();
    console.info(&format!(
        "Scheduler on target `{}`: {} (Ctrl-C to stop)",
        project.target.name,
        match scheduled.is_empty() {
            true => "no pipeline has a schedule yet".to_string(),
            false => scheduled.join(", "),
        }
    ));
    let observer: Arc<dyn Observer> = match global.quiet {
        true => Arc::new(Quiet),
        false => Arc::new(Lines {
            console: Console::new(global),
        }),
    };
    let runner = Arc::new(Runner {
        meta,
        launch: launch(global, project.root.clone())?,
        observer,
        followers: scheduler::followers(&pipelines),
        owner: execute::owner(scheduler::OWNER_PREFIX),
    });
    let scheduler = Scheduler {
        root: project.root.clone(),
        runner,
        options: scheduler::Options {
            max_runs: args.max_runs.max(1),
            tick: args.tick,
        },
        events: Arc::new(SchedulerLines(Console::new(global))),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    scheduler
        .serve(pipelines, shutdown)
        .await
        .map_err(|e| anyhow!(e))?;
    drop(lock);
    console.info("Scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

/// Options of `strata backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The pipeline; its cron schedule cuts the period into intervals.
    pub pipeline: String,
    /// The period's start: 2024-01-01 or '2024-01-01 06:00', in the schedule's time zone
    /// (or with an offset, 2024-01-01T06:00:00Z).
    #[arg(long)]
    pub start: String,
    /// The period's end (exclusive), written as --start.
    #[arg(long)]
    pub end: String,
    /// Intervals run at once.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
}

/// Prints each interval as it ends.
struct BackfillLines(Console);

impl strata_orchestrator::backfill::Progress for BackfillLines {
    fn ended(&self, done: usize, total: usize, run: &PipelineRunRecord, status: &str) {
        self.0.info(&format!(
            "{done} of {total}: {} – {}: run {} {status}",
            run.interval_start.as_deref().unwrap_or(""),
            run.interval_end.as_deref().unwrap_or(""),
            run.id
        ));
    }
}

/// A time given on the command line, read in `timezone` unless it carries an offset.
fn time_in(
    text: &str,
    flag: &str,
    timezone: chrono_tz::Tz,
) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let naive = strata_runner::microbatch::parse_time(text).ok_or_else(|| {
        anyhow!(
            "--{flag} `{text}` is not a time\n  hint: write it as 2024-01-01 or '2024-01-01 06:00'"
        )
    })?;
    timezone
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| anyhow!("--{flag} `{text}` does not exist in {timezone}"))
}

/// `strata backfill PIPELINE --start … --end …`: run the pipeline for each interval of the
/// period; again, it runs only what did not succeed.
pub async fn backfill(global: &GlobalArgs, args: &BackfillArgs) -> Result<ExitCode> {
    use strata_orchestrator::backfill;
    let project = load_project(global)?;
    let pipeline = pipeline::find(&project.root, &args.pipeline)?;
    let all = pipeline::load(&project.root)?;
    let timezone = pipeline
        .schedule
        .as_ref()
        .map(|s| s.timezone)
        .unwrap_or(chrono_tz::UTC);
    let start = time_in(&args.start, "start", timezone)?;
    let end = time_in(&args.end, "end", timezone)?;
    let intervals = backfill::intervals(&pipeline, start, end).map_err(|e| anyhow!(e))?;
    if intervals.is_empty() {
        bail!(
            "the schedule of `{}` names no whole interval between --start and --end",
            pipeline.name
        );
    }
    let console = Console::new(global);
    console.info(&format!(
        "{}: backfilling {} intervals from {} to {}, {} at once",
        pipeline.name,
        intervals.len(),
        intervals[0].start,
        intervals[intervals.len() - 1].end,
        args.parallel.max(1)
    ));
    let runner = Arc::new(Runner {
        meta: Arc::new(MetaStore::open(&project.target.metadata)?),
        launch: launch(global, project.root.clone())?,
        observer: Arc::new(Quiet),
        followers: scheduler::followers(&all),
        owner: execute::owner(backfill::OWNER_PREFIX),
    });
    let results = backfill::backfill(
        runner,
        &pipeline,
        &intervals,
        args.parallel,
        Arc::new(BackfillLines(Console::new(global))),
    )
    .await
    .map_err(|e| anyhow!(e))?;
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, s)| !s.starts_with("success"))
        .map(|(r, _)| r.id.to_string())
        .collect();
    println!(
        "{}: backfill of {} intervals: {} succeeded, {} did not{}",
        pipeline.name,
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        match failed.is_empty() {
            true => String::new(),
            false => format!(
                " (runs {}; `strata runs show ID` says why; the same command again runs them again)",
                failed.join(", ")
            ),
        }
    );
    Ok(match failed.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

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

/// `strata runs [PIPELINE]` and `strata runs show ID`.
pub async fn runs(global: &GlobalArgs, args: &RunsArgs) -> Result<ExitCode> {
    let project = load_project(global)?;
    let meta = MetaStore::open(&project.target.metadata)?;
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
