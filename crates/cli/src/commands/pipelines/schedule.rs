//! `strata scheduler` and `strata backfill`: pipelines on their schedules, and runs over past
//! intervals.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use strata_meta::pipelines::PipelineRunRecord;
use strata_orchestrator::execute::{self, Quiet};
use strata_orchestrator::pipeline;
use strata_orchestrator::scheduler::{self, Scheduler};
use strata_orchestrator::{Observer, Runner};

use super::{Lines, launch, open_meta};
use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

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
    let lock = crate::context::scheduler_lock(&project, "strata scheduler")?.map_err(|e| match e {
        strata_meta::LockError::Busy { holder, .. } => anyhow!(
            "a scheduler already runs on target `{}`: {holder}; stop it first (one scheduler per target)",
            project.target.name
        ),
        other => anyhow!(other),
    })?;
    let meta = open_meta(&project)?;
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
        meta: crate::context::open_meta(&project)?,
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
