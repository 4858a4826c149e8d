//! Backfills: a pipeline run once for each interval its schedule cuts between two times, each
//! run given its interval's bounds (`var('interval_start')`, `var('interval_end')`, and the
//! microbatch range of `build` and `run` steps), several at once, resumable. Intervals are
//! queued like scheduled ones (once each); running the same backfill again runs only what
//! did not succeed, and a failed run again only its steps that did not succeed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use strata_meta::pipelines::PipelineRunRecord;

use crate::execute::{Interval, Runner, now};
use crate::pipeline::Pipeline;

/// How a run's owner names a backfill.
pub const OWNER_PREFIX: &str = "backfill ";
/// The most intervals one backfill takes.
pub const MAX_INTERVALS: usize = 10_000;

/// What a backfill tells as it goes.
pub trait Progress: Send + Sync {
    /// Interval `done` of `total` ended with `run`'s outcome.
    fn ended(&self, done: usize, total: usize, run: &PipelineRunRecord, status: &str);
}

/// The intervals `pipeline`'s cron schedule cuts in [`start`, `end`): from each time it names
/// to the next.
pub fn intervals(
    pipeline: &Pipeline,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Interval>, String> {
    let Some((expression, timezone)) = pipeline
        .schedule
        .as_ref()
        .and_then(|s| s.cron.as_ref().map(|c| (c, s.timezone)))
    else {
        return Err(format!(
            "pipeline `{}` has no cron schedule to cut intervals by: add `schedule: {{cron: \"0 6 * * *\"}}` to {}",
            pipeline.name,
            pipeline.file.display()
        ));
    };
    if start >= end {
        return Err("--start must be before --end".into());
    }
    let cron = crate::cron::parse(expression)?;
    // The first interval starts at the first time named at or after `start`.
    let mut at =
        match crate::cron::next_after(&cron, timezone, start - chrono::Duration::seconds(1)) {
            Some(t) => t,
            None => return Ok(Vec::new()),
        };
    let mut out = Vec::new();
    while let Some(next) = crate::cron::next_after(&cron, timezone, at) {
        if next > end {
            break;
        }
        if out.len() >= MAX_INTERVALS {
            return Err(format!(
                "more than {MAX_INTERVALS} intervals between --start and --end: backfill a shorter period at a time"
            ));
        }
        out.push(Interval {
            start: at,
            end: next,
        });
        at = next;
    }
    Ok(out)
}

/// Run `pipeline` for each interval, `parallel` at once, in interval order; the runs, in
/// interval order, with how each ended.
pub async fn backfill(
    runner: Arc<Runner>,
    pipeline: &Pipeline,
    intervals: &[Interval],
    parallel: usize,
    progress: Arc<dyn Progress>,
) -> Result<Vec<(PipelineRunRecord, String)>, String> {
    let meta = runner.meta.clone();
    let keys: Vec<(String, String)> = intervals
        .iter()
        .map(|i| (i.start.to_rfc3339(), i.end.to_rfc3339()))
        .collect();
    meta.queue_intervals(&pipeline.name, "backfill", &keys, None, &now())
        .map_err(|e| format!("cannot queue the intervals: {e}"))?;
    // This backfill's runs: those that succeeded before stay as they are.
    let all = meta
        .pipeline_runs(Some(&pipeline.name), usize::MAX >> 1)
        .map_err(|e| format!("cannot read the runs: {e}"))?;
    let mut ours: Vec<PipelineRunRecord> = all
        .into_iter()
        .filter(|r| r.trigger == "backfill")
        .filter(|r| {
            r.interval_start
                .as_ref()
                .is_some_and(|s| keys.iter().any(|(k, _)| k == s))
        })
        .collect();
    ours.sort_by(|a, b| a.interval_start.cmp(&b.interval_start));
    let total = ours.len();
    let mut results: Vec<(PipelineRunRecord, String)> = Vec::new();
    let mut todo = Vec::new();
    for r in ours {
        match r.status.as_str() {
            "success" => results.push((r.clone(), "success (before)".into())),
            "running" if owner_alive(&r.owner) => {
                return Err(format!(
                    "run {} of this backfill is running in {}: wait for it, or stop it",
                    r.id, r.owner
                ));
            }
            _ => todo.push(r),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = todo.into_iter();
    let mut done = results.len();
    loop {
        while tasks.len() < parallel.max(1) {
            let Some(run) = pending.next() else { break };
            // Failed, interrupted or abandoned runs are taken up again.
            meta.requeue_pipeline_run(run.id)
                .map_err(|e| format!("cannot queue run {}: {e}", run.id))?;
            let (runner, pipeline) = (runner.clone(), pipeline.clone());
            tasks.spawn(async move {
                let outcome = runner.resume(&run, &pipeline, false).await;
                (run, outcome)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (run, outcome) = joined.map_err(|e| format!("a run's task failed: {e}"))?;
        let status = match outcome {
            Ok(Some(summary)) => summary.status.to_string(),
            Ok(None) => "taken by another process".to_string(),
            Err(e) => return Err(e),
        };
        done += 1;
        progress.ended(done, total, &run, &status);
        results.push((run, status));
    }
    results.sort_by(|a, b| a.0.interval_start.cmp(&b.0.interval_start));
    Ok(results)
}

/// Whether the process a run's owner names (`… pid 123 on host`) still runs here.
fn owner_alive(owner: &str) -> bool {
    let Some(pid) = owner
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    #[cfg(unix)]
    {
        rustix::process::Pid::from_raw(pid)
            .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}
