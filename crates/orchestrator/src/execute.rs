//! Running a pipeline: its steps in dependency order (steps whose dependencies are done run
//! at once), each attempt a process of its own (`strata build …`, a shell command) so a
//! timeout can stop it and a crash stays inside it; retries with backoff; sensors that look
//! until their condition holds or their time runs out. Every run and every attempt is
//! recorded in the metadata store as it happens.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use strata_meta::MetaStore;
use strata_meta::pipelines::{NewRun, PipelineRunRecord, StepEnd};

use crate::pipeline::{Action, OnFailure, Pipeline, Step};

/// How long a sensor without a `timeout` waits.
pub const SENSOR_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How steps are started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The project folder (commands run there).
    pub project_dir: PathBuf,
    /// The `strata` binary steps run.
    pub strata: PathBuf,
    /// Arguments every `strata` step gets before its command (`--target prod`).
    pub global_args: Vec<String>,
    /// Project variables for every `strata` step (YAML, as `--vars` takes them); a run
    /// over a data interval adds `interval_start` and `interval_end`.
    pub vars: Option<String>,
}

impl Launch {
    /// The `--vars` of a step's `strata` command, if any.
    fn vars(&self, interval: Option<Interval>) -> Result<Option<String>, String> {
        let Some(i) = interval else {
            return Ok(self.vars.clone());
        };
        let mut vars = match &self.vars {
            None => serde_json::Map::new(),
            Some(text) => {
                let yaml: yaml_serde::Value =
                    yaml_serde::from_str(text).map_err(|e| format!("--vars is not YAML: {e}"))?;
                match strata_project::config::yaml_to_json(&yaml) {
                    serde_json::Value::Object(m) => m,
                    serde_json::Value::Null => serde_json::Map::new(),
                    other => return Err(format!("--vars must be a mapping, not {other}")),
                }
            }
        };
        vars.insert("interval_start".into(), i.start.to_rfc3339().into());
        vars.insert("interval_end".into(), i.end.to_rfc3339().into());
        Ok(Some(serde_json::Value::Object(vars).to_string()))
    }
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `strata trigger`.
    Manual,
    /// Its schedule.
    Schedule,
    /// `strata backfill`.
    Backfill,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Backfill => "backfill",
        }
    }
}

/// The data interval a run covers, given to its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// How an attempt, or a step, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    /// Stopped at its timeout (a sensor: its condition never held).
    TimedOut,
    /// Not run: a step it waits for failed, or the run stopped.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Skipped => "skipped",
        }
    }
}

/// What a run tells as it goes (the CLI prints it).
pub trait Observer: Send + Sync {
    /// An attempt started.
    fn attempt_started(&self, _pipeline: &str, _step: &Step, _attempt: u32) {}
    /// An attempt ended; `retry_in` when another follows.
    fn attempt_ended(
        &self,
        _pipeline: &str,
        _step: &Step,
        _attempt: u32,
        _end: &AttemptEnd,
        _retry_in: Option<Duration>,
    ) {
    }
    /// A step was skipped.
    fn step_skipped(&self, _pipeline: &str, _step: &Step, _why: &str) {}
    /// Something else worth saying (an alert that could not be sent).
    fn note(&self, _text: &str) {}
}

/// An observer that tells nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    pub status: Status,
    pub seconds: f64,
    pub exit_code: Option<i32>,
    /// One line: why it failed, or what it did.
    pub message: String,
    /// The end of its output.
    pub log: String,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: i64,
    /// `success` or `failed`.
    pub status: &'static str,
    pub seconds: f64,
    /// Each step's last status, in the pipeline's order.
    pub steps: Vec<(String, Status, u32)>,
    /// Steps that failed after all their retries.
    pub retries_exhausted: Vec<String>,
}

/// Runs pipelines, recording each run and attempt in the metadata store.
pub struct Runner {
    pub meta: Arc<MetaStore>,
    pub launch: Launch,
    pub observer: Arc<dyn Observer>,
    /// For each pipeline, the pipelines scheduled after it (queued when it succeeds).
    pub followers: HashMap<String, Vec<String>>,
    /// How this process names itself as the owner of the runs it runs.
    pub owner: String,
}

/// This process, as the owner of a run: `pid 123 on host`, after `prefix`.
pub fn owner(prefix: &str) -> String {
    format!("{prefix}pid {} on {}", std::process::id(), host())
}

/// Runs a `strata trigger` of this machine left `running` when it was killed: marked
/// interrupted, with their running attempts, and what those attempts started is stopped.
/// (A scheduler's runs are its successor's to resume, a backfill's the next backfill's.)
/// Returns the runs' ids.
pub fn reap_abandoned_runs(meta: &MetaStore) -> Result<Vec<i64>, String> {
    let host = host();
    let running = meta
        .pipeline_runs_with_status(&["running"])
        .map_err(|e| format!("cannot read the runs: {e}"))?;
    let mut reaped = Vec::new();
    for run in running {
        let Some(pid) = trigger_pid(&run.owner, &host) else {
            continue;
        };
        if pid == std::process::id() || crate::process::alive(pid) {
            continue;
        }
        let pids = meta
            .interrupt_pipeline_run(
                run.id,
                &now(),
                &format!("the process running it (pid {pid}) ended without finishing it"),
            )
            .map_err(|e| format!("cannot record run {}: {e}", run.id))?;
        for p in pids {
            crate::process::kill_group(p);
        }
        reaped.push(run.id);
    }
    Ok(reaped)
}

/// The process id in a `strata trigger`'s owner (`pid 123 on host`) of this host.
fn trigger_pid(owner: &str, host: &str) -> Option<u32> {
    let (head, on) = owner.rsplit_once(" on ")?;
    if on != host {
        return None;
    }
    head.strip_prefix("pid ")?.parse().ok()
}

impl Runner {
    /// Run `pipeline` now: `Ok` with the run's outcome (a failed step gives a failed run,
    /// not an error); `Err` when it could not be recorded.
    pub async fn run(
        &self,
        pipeline: &Pipeline,
        trigger: Trigger,
        interval: Option<Interval>,
    ) -> Result<RunSummary, String> {
        let run_id = self
            .meta
            .start_pipeline_run(&NewRun {
                pipeline: &pipeline.name,
                trigger: trigger.as_str(),
                interval_start: interval.map(|i| i.start.to_rfc3339()),
                interval_end: interval.map(|i| i.end.to_rfc3339()),
                started_at: now(),
                owner: &self.owner,
            })
            .map_err(|e| format!("cannot record the run: {e}"))?;
        self.execute(run_id, pipeline, interval, HashMap::new(), HashMap::new())
            .await
    }

    /// Run a queued or interrupted run, unless another process took it first (`None`).
    /// Steps that succeeded in it already are not run again, unless `restart`.
    pub async fn resume(
        &self,
        run: &PipelineRunRecord,
        pipeline: &Pipeline,
        restart: bool,
    ) -> Result<Option<RunSummary>, String> {
        let record = |e: strata_meta::Error| format!("cannot record the run: {e}");
        if !self
            .meta
            .claim_pipeline_run(run.id, &self.owner)
            .map_err(record)?
        {
            return Ok(None);
        }
        let time = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let interval = match (time(&run.interval_start), time(&run.interval_end)) {
            (Some(start), Some(end)) => Some(Interval { start, end }),
            _ => None,
        };
        let mut done = HashMap::new();
        let mut tried: HashMap<String, u32> = HashMap::new();
        if let Some((_, attempts)) = self.meta.pipeline_run(run.id).map_err(record)? {
            for a in attempts {
                let n = u32::try_from(a.attempt).unwrap_or(0);
                let seen = tried.entry(a.step.clone()).or_default();
                *seen = (*seen).max(n);
                if !restart && a.status == "success" {
                    done.insert(a.step, (Status::Success, n));
                }
            }
        }
        self.execute(run.id, pipeline, interval, done, tried)
            .await
            .map(Some)
    }

    /// Send the alerts a finished run calls for (a failure, steps that spent their
    /// retries, a success), as its pipeline asks.
    async fn alert(
        &self,
        pipeline: &Pipeline,
        run_id: i64,
        failed: bool,
        last: &HashMap<String, (Status, u32)>,
    ) {
        use crate::alerts::{Alert, Event, send};
        if pipeline.alerts.on.is_empty() {
            return;
        }
        let did_not = |s: &Step| {
            last.get(&s.name)
                .is_some_and(|(st, _)| !matches!(st, Status::Success | Status::Skipped))
        };
        let broken: Vec<String> = pipeline
            .steps
            .iter()
            .filter(|s| did_not(s))
            .map(|s| s.name.clone())
            .collect();
        let mut alerts = vec![match failed {
            true => Alert {
                event: Event::Failure,
                pipeline,
                run_id,
                text: format!(
                    "{}: run {run_id} failed: {} did not succeed",
                    pipeline.name,
                    broken.join(", ")
                ),
                steps: broken.clone(),
            },
            false => Alert {
                event: Event::Success,
                pipeline,
                run_id,
                text: format!("{}: run {run_id} succeeded", pipeline.name),
                steps: Vec::new(),
            },
        }];
        let exhausted: Vec<String> = pipeline
            .steps
            .iter()
            .filter(|s| s.retries > 0 && did_not(s))
            .map(|s| s.name.clone())
            .collect();
        if !exhausted.is_empty() {
            alerts.push(Alert {
                event: Event::RetriesExhausted,
                pipeline,
                run_id,
                text: format!(
                    "{}: run {run_id}: {} failed after all their retries",
                    pipeline.name,
                    exhausted.join(", ")
                ),
                steps: exhausted,
            });
        }
        for a in &alerts {
            if let Err(e) = send(&self.meta, a).await {
                let text = format!(
                    "{}: run {run_id}: the `{}` alert was not sent: {e}",
                    pipeline.name,
                    a.event.as_str()
                );
                tracing::warn!("{text}");
                self.observer.note(&text);
            }
        }
    }

    /// Run the steps of run `run_id` not in `done`, numbering each one's attempts after
    /// `tried`.
    async fn execute(
        &self,
        run_id: i64,
        pipeline: &Pipeline,
        interval: Option<Interval>,
        done: HashMap<String, (Status, u32)>,
        tried: HashMap<String, u32>,
    ) -> Result<RunSummary, String> {
        let started = Instant::now();
        let meta = &self.meta;
        let steps: Arc<Vec<Step>> = Arc::new(pipeline.steps.clone());
        let mut last: HashMap<String, (Status, u32)> = done;
        let mut running: HashSet<String> = HashSet::new();
        let mut stopping = false;
        let mut retries_exhausted = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            // Start every step whose dependencies are done. A dependency that failed with
            // `on_failure: stop` stopped the run before this point; one with `continue`
            // counts as done.
            if !stopping {
                for step in steps.iter() {
                    if last.contains_key(&step.name) || running.contains(&step.name) {
                        continue;
                    }
                    if step.after.iter().any(|a| !last.contains_key(a)) {
                        continue;
                    }
                    running.insert(step.name.clone());
                    let (meta, launch, step, observer) = (
                        meta.clone(),
                        self.launch.clone(),
                        step.clone(),
                        self.observer.clone(),
                    );
                    let pipeline_name = pipeline.name.clone();
                    let first = tried.get(&step.name).copied().unwrap_or(0) + 1;
                    tasks.spawn(async move {
                        let outcome = run_step(
                            &meta,
                            run_id,
                            &pipeline_name,
                            &step,
                            first,
                            &launch,
                            interval,
                            observer.as_ref(),
                        )
                        .await;
                        (step, outcome)
                    });
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (step, outcome) = joined.map_err(|e| format!("a step's task failed: {e}"))?;
            let (status, attempts) = outcome?;
            running.remove(&step.name);
            if status != Status::Success {
                retries_exhausted.push(step.name.clone());
                if step.on_failure == OnFailure::Stop {
                    stopping = true;
                }
            }
            last.insert(step.name.clone(), (status, attempts));
        }
        // What never started was skipped.
        for step in steps.iter() {
            if last.contains_key(&step.name) {
                continue;
            }
            let why = step
                .after
                .iter()
                .find(|a| last.get(*a).is_some_and(|(s, _)| *s != Status::Success))
                .map(|a| format!("`{a}` did not succeed"))
                .unwrap_or_else(|| "the run stopped".into());
            meta.record_step_skipped(run_id, &step.name, &now(), &why)
                .map_err(|e| format!("cannot record a skipped step: {e}"))?;
            self.observer.step_skipped(&pipeline.name, step, &why);
            last.insert(step.name.clone(), (Status::Skipped, 0));
        }
        let failed = steps.iter().any(|s| {
            s.on_failure == OnFailure::Stop
                && last
                    .get(&s.name)
                    .is_some_and(|(status, _)| *status != Status::Success)
        });
        let status = if failed { "failed" } else { "success" };
        let followers = self
            .followers
            .get(&pipeline.name)
            .cloned()
            .unwrap_or_default();
        meta.finish_pipeline_run(run_id, status, &now(), &followers)
            .map_err(|e| format!("cannot record the run's end: {e}"))?;
        self.alert(pipeline, run_id, failed, &last).await;
        Ok(RunSummary {
            run_id,
            status,
            seconds: started.elapsed().as_secs_f64(),
            steps: steps
                .iter()
                .map(|s| {
                    let (status, attempts) =
                        last.get(&s.name).copied().unwrap_or((Status::Skipped, 0));
                    (s.name.clone(), status, attempts)
                })
                .collect(),
            retries_exhausted,
        })
    }
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

/// Every attempt of one step: its last status and how many attempts it took.
#[allow(clippy::too_many_arguments)]
async fn run_step(
    meta: &MetaStore,
    run_id: i64,
    pipeline: &str,
    step: &Step,
    first: u32,
    launch: &Launch,
    interval: Option<Interval>,
    observer: &dyn Observer,
) -> Result<(Status, u32), String> {
    let mut attempt = first;
    let mut tries = 1;
    loop {
        meta.start_step_attempt(run_id, &step.name, attempt, &now())
            .map_err(|e| format!("cannot record an attempt: {e}"))?;
        observer.attempt_started(pipeline, step, attempt);
        let spawned = |pid: u32| {
            let _ = meta.set_step_pid(run_id, &step.name, attempt, pid);
        };
        let end = attempt_once(pipeline, run_id, step, attempt, launch, interval, &spawned).await;
        meta.finish_step_attempt(
            run_id,
            &step.name,
            attempt,
            &StepEnd {
                status: end.status.as_str(),
                finished_at: now(),
                exit_code: end.exit_code.map(i64::from),
                message: Some(end.message.clone()),
                log: Some(end.log.clone()),
            },
        )
        .map_err(|e| format!("cannot record an attempt's end: {e}"))?;
        // A sensor whose time ran out is not retried (its timeout is the whole wait).
        let retry = end.status != Status::Success
            && tries <= step.retries
            && !(end.status == Status::TimedOut && matches!(step.action, Action::Sensor(_)));
        let wait = retry.then(|| step.backoff.wait(tries + 1, jitter_unit()));
        observer.attempt_ended(pipeline, step, attempt, &end, wait);
        match wait {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                attempt += 1;
                tries += 1;
            }
            None => return Ok((end.status, attempt)),
        }
    }
}

/// One attempt of one step, recorded nowhere (as an Airflow task runs it: Airflow keeps the
/// record and the retries). `interval`: the data interval the step is given.
pub async fn run_once(
    pipeline: &str,
    step: &Step,
    launch: &Launch,
    interval: Option<Interval>,
) -> AttemptEnd {
    attempt_once(pipeline, 0, step, 1, launch, interval, &|_| {}).await
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// One attempt of a step.
async fn attempt_once(
    pipeline: &str,
    run_id: i64,
    step: &Step,
    attempt: u32,
    launch: &Launch,
    interval: Option<Interval>,
    spawned: &(dyn Fn(u32) + Sync),
) -> AttemptEnd {
    let started = Instant::now();
    let env = step_env(pipeline, run_id, step, attempt, interval);
    let mut end = match &step.action {
        Action::Sensor(sensor) => {
            let limit = step.timeout.unwrap_or(SENSOR_TIMEOUT);
            crate::sensor::poke_until(sensor, step.poke_interval, limit, launch, &env).await
        }
        action => {
            let vars = match launch.vars(interval) {
                Ok(v) => v,
                Err(message) => {
                    return AttemptEnd {
                        status: Status::Failed,
                        seconds: 0.0,
                        exit_code: None,
                        message,
                        log: String::new(),
                    };
                }
            };
            let mut cmd = crate::process::command(action, launch, vars.as_deref(), interval);
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            crate::process::run_process(cmd, step.timeout, spawned).await
        }
    };
    end.seconds = started.elapsed().as_secs_f64();
    end
}

/// What each step's process finds in its environment.
fn step_env(
    pipeline: &str,
    run_id: i64,
    step: &Step,
    attempt: u32,
    interval: Option<Interval>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("STRATA_PIPELINE".to_string(), pipeline.to_string()),
        ("STRATA_PIPELINE_RUN_ID".to_string(), run_id.to_string()),
        ("STRATA_STEP".to_string(), step.name.clone()),
        ("STRATA_ATTEMPT".to_string(), attempt.to_string()),
    ];
    if let Some(i) = interval {
        env.push(("STRATA_INTERVAL_START".into(), i.start.to_rfc3339()));
        env.push(("STRATA_INTERVAL_END".into(), i.end.to_rfc3339()));
    }
    env
}

#[cfg(test)]
mod reap_tests {
    #[test]
    fn only_a_trigger_of_this_host_is_read() {
        assert_eq!(super::trigger_pid("pid 42 on box", "box"), Some(42));
        assert_eq!(super::trigger_pid("pid 42 on other", "box"), None);
        assert_eq!(super::trigger_pid("scheduler pid 42 on box", "box"), None);
    }
}
