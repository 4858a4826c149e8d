//! The scheduler: a long-running process that queues each pipeline's scheduled intervals as
//! they come due and runs queued runs, at most `max_active_runs` of one pipeline and
//! `max_runs` in all at once.
//!
//! Crash safety comes from the metadata store. An interval is queued in the same transaction
//! that moves the pipeline's schedule cursor past it, and a unique index keeps it from being
//! queued twice. A run's owner is recorded as it starts. A scheduler that starts finds the runs
//! its predecessor left running, stops what they had started, and resumes them (steps that
//! succeeded are not run again), restarts them or fails them, as each pipeline's
//! `on_interrupt` says.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::execute::{Interval, Runner, now};
use crate::pipeline::{self, OnInterrupt, Pipeline};

/// How a run's owner names a scheduler (runs whose owner starts so are a scheduler's).
pub const OWNER_PREFIX: &str = "scheduler ";
/// The most intervals of one pipeline queued in one look (a long outage catches up over
/// several looks).
const QUEUE_AT_ONCE: usize = 100;

/// What the scheduler tells as it goes.
pub trait Events: Send + Sync {
    fn info(&self, text: &str);
}

/// How the scheduler runs.
pub struct Options {
    /// Runs at once, over all pipelines.
    pub max_runs: usize,
    /// How often it looks for due intervals and queued runs.
    pub tick: Duration,
}

/// The scheduler of one project's target.
pub struct Scheduler {
    pub root: PathBuf,
    pub runner: Arc<Runner>,
    pub options: Options,
    pub events: Arc<dyn Events>,
}

impl Scheduler {
    /// Run until `shutdown` resolves; then start nothing new and wait for the runs going on.
    pub async fn serve(
        &self,
        pipelines: Vec<Pipeline>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let meta = self.runner.meta.clone();
        // What a scheduler before this one left running.
        let pids = meta
            .interrupt_pipeline_runs(OWNER_PREFIX, &now())
            .map_err(|e| format!("cannot read the runs: {e}"))?;
        for pid in pids {
            // A step that outlived its scheduler.
            crate::process::kill_group(pid);
        }
        let mut pipelines = pipelines;
        let mut broken: Option<String> = None;
        let mut active: HashMap<i64, String> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            // Edited pipelines are read again; a broken edit keeps the last good ones.
            match pipeline::load(&self.root) {
                Ok(fresh) => {
                    if broken.take().is_some() {
                        self.events.info("pipelines read again without errors");
                    }
                    pipelines = fresh;
                }
                Err(e) => {
                    let text = e.to_string();
                    if broken.as_deref() != Some(text.as_str()) {
                        self.events.info(&format!(
                            "pipelines not read again, the last good ones go on: {text}"
                        ));
                        broken = Some(text);
                    }
                }
            }
            for p in &pipelines {
                if let Err(e) = self.queue_due(p, Utc::now()) {
                    self.events
                        .info(&format!("{}: cannot queue its runs: {e}", p.name));
                }
            }
            self.start_queued(&pipelines, &mut active, &mut tasks)?;
            self.check_deadlines(&pipelines);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.options.tick) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((id, outcome)) = done {
                        active.remove(&id);
                        if let Err(e) = outcome {
                            self.events.info(&format!("run {id}: {e}"));
                        }
                    }
                }
            }
        }
        if !tasks.is_empty() {
            self.events.info(&format!(
                "stopping: waiting for {} run(s) to end (Ctrl-C again stops them; the next scheduler resumes them)",
                tasks.len()
            ));
            while tasks.join_next().await.is_some() {}
        }
        Ok(())
    }

    /// Queue the intervals of `pipeline` that are due at `now` and not queued yet.
    pub fn queue_due(&self, pipeline: &Pipeline, now: DateTime<Utc>) -> Result<Vec<i64>, String> {
        let Some(schedule) = &pipeline.schedule else {
            return Ok(Vec::new());
        };
        let Some(expression) = &schedule.cron else {
            return Ok(Vec::new());
        };
        let cron = crate::cron::parse(expression)?;
        let meta = &self.runner.meta;
        let cursor = meta
            .schedule_cursor(&pipeline.name)
            .map_err(|e| e.to_string())?
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map(|c| c.with_timezone(&Utc));
        let Some(cursor) = cursor else {
            // First seen: its schedule starts now (the next time it names).
            meta.queue_intervals(
                &pipeline.name,
                "schedule",
                &[],
                Some(&now.to_rfc3339()),
                &crate::execute::now(),
            )
            .map_err(|e| e.to_string())?;
            return Ok(Vec::new());
        };
        // Each time the schedule names ends the interval that began at the time before it.
        let mut due: Vec<Interval> = Vec::new();
        let mut at = cursor;
        while let Some(next) = crate::cron::next_after(&cron, schedule.timezone, at) {
            if next > now || due.len() >= QUEUE_AT_ONCE {
                break;
            }
            let start = crate::cron::previous_before(&cron, schedule.timezone, next).unwrap_or(at);
            due.push(Interval { start, end: next });
            at = next;
        }
        let Some(last) = due.last().copied() else {
            return Ok(Vec::new());
        };
        if !schedule.catchup {
            // Only the latest interval runs; the ones missed are let go.
            due = vec![last];
        }
        let intervals: Vec<(String, String)> = due
            .iter()
            .map(|i| (i.start.to_rfc3339(), i.end.to_rfc3339()))
            .collect();
        let ids = meta
            .queue_intervals(
                &pipeline.name,
                "schedule",
                &intervals,
                Some(&last.end.to_rfc3339()),
                &crate::execute::now(),
            )
            .map_err(|e| e.to_string())?;
        for (id, i) in ids.iter().zip(&due) {
            self.events.info(&format!(
                "{}: run {id} queued for {} – {}",
                pipeline.name,
                i.start
                    .with_timezone(&schedule.timezone)
                    .format("%Y-%m-%d %H:%M:%S %Z"),
                i.end
                    .with_timezone(&schedule.timezone)
                    .format("%Y-%m-%d %H:%M:%S %Z")
            ));
        }
        Ok(ids)
    }

    /// Alert about scheduled runs not finished by their pipeline's `sla` (once each).
    fn check_deadlines(&self, pipelines: &[Pipeline]) {
        let now = Utc::now();
        for p in pipelines {
            let (Some(sla), Some(schedule)) = (p.alerts.sla, &p.schedule) else {
                continue;
            };
            if !p.alerts.on.iter().any(|e| e == "sla_miss") {
                continue;
            }
            let Ok(runs) = self.runner.meta.pipeline_runs(Some(&p.name), 50) else {
                continue;
            };
            for run in runs.into_iter().filter(|r| {
                r.trigger == "schedule"
                    && matches!(r.status.as_str(), "queued" | "running" | "interrupted")
            }) {
                let due = run
                    .interval_end
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                let Some(deadline) =
                    due.and_then(|d| crate::alerts::deadline(d, schedule.timezone, sla))
                else {
                    continue;
                };
                if now < deadline {
                    continue;
                }
                let (meta, pipeline, events) =
                    (self.runner.meta.clone(), p.clone(), self.events.clone());
                tokio::spawn(async move {
                    let alert = crate::alerts::Alert {
                        event: crate::alerts::Event::SlaMiss,
                        pipeline: &pipeline,
                        run_id: run.id,
                        text: format!(
                            "{}: run {} is late: not finished by {} ({})",
                            pipeline.name,
                            run.id,
                            deadline
                                .with_timezone(&schedule_tz(&pipeline))
                                .format("%Y-%m-%d %H:%M %Z"),
                            run.status
                        ),
                        steps: Vec::new(),
                    };
                    if let Err(e) = crate::alerts::send(&meta, &alert).await {
                        events.info(&format!(
                            "{}: run {}: the `sla_miss` alert was not sent: {e}",
                            pipeline.name, run.id
                        ));
                    }
                });
            }
        }
    }

    /// Start the queued and interrupted runs there is room for, oldest first.
    fn start_queued(
        &self,
        pipelines: &[Pipeline],
        active: &mut HashMap<i64, String>,
        tasks: &mut tokio::task::JoinSet<(i64, Result<(), String>)>,
    ) -> Result<(), String> {
        let waiting = self
            .runner
            .meta
            .pipeline_runs_with_status(&["interrupted", "queued"])
            .map_err(|e| format!("cannot read the queued runs: {e}"))?;
        for run in waiting {
            if active.len() >= self.options.max_runs {
                break;
            }
            // A backfill runs its runs itself (`strata backfill`).
            if run.trigger == "backfill" {
                continue;
            }
            let Some(pipeline) = pipelines.iter().find(|p| p.name == run.pipeline) else {
                continue;
            };
            let running = active.values().filter(|p| **p == pipeline.name).count();
            if running >= pipeline.max_active_runs {
                continue;
            }
            let resumed = run.status == "interrupted";
            if resumed && pipeline.on_interrupt == OnInterrupt::Fail {
                let _ = self
                    .runner
                    .meta
                    .finish_pipeline_run(run.id, "failed", &now(), &[]);
                self.events.info(&format!(
                    "{}: run {} was interrupted and is failed (on_interrupt: fail)",
                    pipeline.name, run.id
                ));
                continue;
            }
            let restart = pipeline.on_interrupt == OnInterrupt::Restart;
            if resumed {
                self.events.info(&format!(
                    "{}: run {} was interrupted; {} it",
                    pipeline.name,
                    run.id,
                    if restart { "restarting" } else { "resuming" }
                ));
            } else {
                self.events
                    .info(&format!("{}: run {} started", pipeline.name, run.id));
            }
            active.insert(run.id, pipeline.name.clone());
            let (runner, pipeline, events) =
                (self.runner.clone(), pipeline.clone(), self.events.clone());
            tasks.spawn(async move {
                let outcome = match runner.resume(&run, &pipeline, restart).await {
                    Ok(Some(summary)) => {
                        events.info(&format!(
                            "{}: run {} {} in {:.1}s",
                            pipeline.name, run.id, summary.status, summary.seconds
                        ));
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                (run.id, outcome)
            });
        }
        Ok(())
    }
}

/// The pipelines scheduled after each pipeline.
pub fn followers(pipelines: &[Pipeline]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for p in pipelines {
        for after in p.schedule.iter().flat_map(|s| &s.after) {
            out.entry(after.clone()).or_default().push(p.name.clone());
        }
    }
    out
}

fn schedule_tz(p: &Pipeline) -> chrono_tz::Tz {
    p.schedule
        .as_ref()
        .map(|s| s.timezone)
        .unwrap_or(chrono_tz::UTC)
}
