//! Pipelines as code: `pipelines/<name>.yml`, read and checked before anything runs. A
//! mistake (an unknown step type, a malformed cron expression, an unknown time zone, a cycle
//! between steps) is named with its file and line.
//!
//! ```yaml
//! name: daily
//! schedule: {cron: "0 6 * * *", timezone: Europe/Berlin, catchup: false}
//! steps:
//!   - {name: wait_for_files, sensor: {files: "data/events/*.ndjson.gz"}, timeout: 1h, poke_interval: 1m}
//!   - {name: load, ingest: {select: "source:app"}, retries: 2, backoff: {initial: 10s, max: 5m}}
//!   - {name: transform, build: {select: "+mart_mrr"}, after: [load]}
//!   - {name: notify, command: "./scripts/notify.sh", on_failure: continue}
//! alerts: {on: [failure, retries_exhausted, sla_miss], sla: "07:30", webhook: "{{ env_var('ALERT_WEBHOOK') }}"}
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_common::{Location, did_you_mean};
use strata_project::{Error, Result};

mod parse;

use parse::parse;

/// Where pipelines live in a project.
pub const FOLDER: &str = "pipelines";

/// A pipeline: steps with their dependencies, when it runs, and whom to tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    /// Its file, relative to the project.
    pub file: PathBuf,
    pub schedule: Option<Schedule>,
    /// In the file's order; each with the steps it waits for.
    pub steps: Vec<Step>,
    pub alerts: Alerts,
    /// Runs of this pipeline at once (default 1: a run waits for the one before).
    pub max_active_runs: usize,
    /// What a scheduler does with a run its predecessor left unfinished.
    pub on_interrupt: OnInterrupt,
}

/// What becomes of a run whose scheduler stopped (killed, crashed) while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Run the steps that had not succeeded (the default).
    Resume,
    /// Run every step again.
    Restart,
    /// Mark the run failed.
    Fail,
}

/// When a pipeline runs by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// A five-field cron expression (`0 6 * * *`), read in `timezone`.
    pub cron: Option<String>,
    /// An IANA time zone (`Europe/Berlin`; default UTC).
    pub timezone: chrono_tz::Tz,
    /// Run the intervals missed while no scheduler ran (default false: only the latest).
    pub catchup: bool,
    /// Run after each successful run of these pipelines.
    pub after: Vec<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub action: Action,
    /// The steps it waits for (default: the step before it).
    pub after: Vec<String>,
    /// Attempts after the first one fails.
    pub retries: u32,
    pub backoff: Backoff,
    /// An attempt running longer is stopped and counts as failed (for a sensor: the time it
    /// waits for its condition).
    pub timeout: Option<Duration>,
    pub on_failure: OnFailure,
    /// How often a sensor looks.
    pub poke_interval: Duration,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `strata ingest` of a selection of sources.
    Ingest { select: Option<String> },
    /// `strata build|run|test|snapshot|seed` of a selection.
    Strata {
        command: String,
        select: Option<String>,
        exclude: Option<String>,
        full_refresh: bool,
    },
    /// Wait until a condition holds.
    Sensor(Sensor),
    /// A shell command, run in the project folder.
    Command(String),
}

/// What a sensor waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Sensor {
    /// At least one file matches this glob (relative to the project).
    Files(String),
    /// `strata source freshness` passes for these sources.
    Freshness(Option<String>),
    /// This query's first value is true (a SQL condition, with `ref()` and `source()`).
    Sql(String),
}

/// How long to wait between attempts: `initial`, doubled each time up to `max`, each wait
/// spread by up to a quarter either way (`jitter`) so retries of many runs do not line up.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            jitter: true,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (2 is the first retry); `unit` in [0, 1) picks the
    /// jitter.
    pub fn wait(&self, attempt: u32, unit: f64) -> Duration {
        let doublings = attempt.saturating_sub(2).min(30);
        let base = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        if !self.jitter {
            return base;
        }
        base.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
            .min(self.max)
    }
}

/// What a failed step (retries spent) means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The run fails: steps not started yet are skipped.
    Stop,
    /// The run goes on: the steps after it run as if it had succeeded.
    Continue,
}

/// Whom to tell about what.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alerts {
    /// `failure`, `retries_exhausted`, `sla_miss`, `success`.
    pub on: Vec<String>,
    /// A run not finished by this time of day (in the schedule's time zone) is late.
    pub sla: Option<Sla>,
    /// A URL to POST a JSON message to (Slack-style incoming webhooks work).
    pub webhook: Option<String>,
    /// Addresses to email (through `STRATA_SMTP_URL`).
    pub email: Vec<String>,
}

/// When a scheduled run should be done by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sla {
    /// A time of day (`"07:30"`), in the schedule's time zone, on the day the run is due.
    At(chrono::NaiveTime),
    /// A time after the run is due (`2h`), as Airflow's `sla`.
    After(Duration),
}

/// Every pipeline under `root/pipelines/`, checked.
pub fn load(root: &Path) -> Result<Vec<Pipeline>> {
    let mut out: Vec<Pipeline> = Vec::new();
    for (rel, text, doc) in strata_project::config::yaml_files(root, FOLDER)? {
        let stem = rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pipeline = parse(&stem, &doc, &rel).map_err(|(needle, msg)| {
            strata_project::config::error_at_needle(&rel, &text, &needle, msg)
                .with_node(format!("pipeline `{stem}`"))
        })?;
        if let Some(other) = out.iter().find(|p| p.name == pipeline.name) {
            return Err(Error::at(
                Location::file(&rel),
                format!(
                    "two pipelines are named `{}`: this one and {}",
                    pipeline.name,
                    other.file.display()
                ),
            ));
        }
        out.push(pipeline);
    }
    // Schedules after other pipelines name pipelines that exist.
    for p in &out {
        for after in p.schedule.iter().flat_map(|s| &s.after) {
            if !out.iter().any(|o| &o.name == after) {
                return Err(Error::at(
                    Location::file(&p.file),
                    format!(
                        "`schedule: {{after: {after}}}` names no pipeline{}",
                        did_you_mean(after, out.iter().map(|o| o.name.as_str()))
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Find one pipeline by name.
pub fn find(root: &Path, name: &str) -> Result<Pipeline> {
    let all = load(root)?;
    let names: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
    all.into_iter().find(|p| p.name == name).ok_or_else(|| {
        let hint = match names.is_empty() {
            true => format!(" (there are none: add pipelines/{name}.yml)"),
            false => format!(
                "{}; the pipelines are {}",
                did_you_mean(name, names.iter().map(String::as_str)),
                names.join(", ")
            ),
        };
        Error::user(format!("no pipeline is named `{name}`{hint}"))
    })
}

/// `90s`, `5m`, `1h30m`, `250ms`, `2d`, or a number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// A duration as people write it: `1h30m`, `45s`, `250ms`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join(FOLDER)).expect("dir");
        std::fs::write(dir.join(FOLDER).join(name), text).expect("write");
    }

    fn error(text: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "p.yml", text);
        load(dir.path()).expect_err(text).to_string()
    }

    #[test]
    fn the_documented_shape_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "daily.yml",
            r#"name: daily
schedule: {cron: "0 6 * * *", timezone: Europe/Berlin, catchup: false}
steps:
  - {name: wait_for_files, sensor: {files: "data/events/*.ndjson.gz"}, timeout: 1h, poke_interval: 1m}
  - {name: load, ingest: {select: "source:app"}, retries: 2, backoff: {initial: 10s, max: 5m}}
  - {name: transform, build: {select: "+mart_mrr"}, after: [load]}
  - {name: notify, command: "./scripts/notify.sh", on_failure: continue}
alerts: {on: [failure, retries_exhausted, sla_miss], sla: "07:30", webhook: "{{ env_var('ALERT_WEBHOOK') }}"}
"#,
        );
        let p = find(dir.path(), "daily").expect("daily");
        assert_eq!(p.steps.len(), 4);
        assert_eq!(p.steps[0].after, Vec::<String>::new());
        assert_eq!(p.steps[1].after, vec!["wait_for_files"]);
        assert_eq!(p.steps[3].after, vec!["transform"]);
        assert_eq!(p.steps[0].timeout, Some(Duration::from_secs(3600)));
        assert_eq!(p.steps[1].retries, 2);
        assert_eq!(p.steps[1].backoff.max, Duration::from_secs(300));
        assert_eq!(p.steps[3].on_failure, OnFailure::Continue);
        assert_eq!(
            p.steps[2].action,
            Action::Strata {
                command: "build".into(),
                select: Some("+mart_mrr".into()),
                exclude: None,
                full_refresh: false
            }
        );
        let s = p.schedule.expect("schedule");
        assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(
            p.alerts.sla,
            chrono::NaiveTime::from_hms_opt(7, 30, 0).map(Sla::At)
        );
        let err = find(dir.path(), "dayly")
            .expect_err("no such pipeline")
            .to_string();
        assert!(err.contains("did you mean `daily`"), "{err}");
    }

    #[test]
    fn mistakes_are_named_with_their_file_and_line() {
        for (text, line, says) in [
            (
                "steps:\n  - {name: a, command: x}\nschedule: {cron: \"0 6 * *\"}\n",
                3,
                "has 4 fields",
            ),
            (
                "schedule: {cron: \"0 6 * * *\", timezone: Mars/Olympus}\nsteps:\n  - {name: a, command: x}\n",
                1,
                "not a time zone",
            ),
            (
                "steps:\n  - {name: a, command: x}\n  - {name: b, bulid: {select: x}}\n",
                3,
                "did you mean `build`",
            ),
            (
                "steps:\n  - {name: a, command: x, after: [c]}\n  - {name: b, command: y, after: [a]}\n  - {name: c, command: z, after: [b]}\n",
                2,
                "in a circle: a → b → c → a",
            ),
            (
                "steps:\n  - {name: a, command: x, after: [nope]}\n",
                2,
                "not a step of this pipeline",
            ),
            (
                "steps:\n  - {name: a, command: x, timeout: soon}\n",
                2,
                "not a duration",
            ),
            (
                "steps:\n  - {name: a, command: x, build: {}}\n",
                2,
                "one step does one thing",
            ),
            (
                "steps:\n  - {name: a, command: x}\non_interrupt: later\n",
                3,
                "must be `resume`, `restart` or `fail`",
            ),
            (
                "steps:\n  - {name: a, command: x}\nalerts: {on: [failur], webhook: \"http://x\"}\n",
                3,
                "did you mean `failure`",
            ),
            (
                "steps:\n  - {name: a, command: x}\nalerts: {on: [sla_miss], sla: whenever, webhook: \"http://x\"}\n",
                3,
                "neither a time of day",
            ),
            (
                "steps:\n  - {name: a, command: x}\nalerts:\n  on: [failure]\n",
                3,
                "say where to send them",
            ),
            (
                "steps:\n  - {name: a, command: x, retries: many}\n",
                2,
                "whole number from 0 to 100",
            ),
            (
                "steps:\n  - {name: \"../x\", command: x}\n",
                2,
                "not a step name",
            ),
        ] {
            let err = error(text);
            assert!(err.contains(&format!("p.yml:{line}")), "{text}: {err}");
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn durations_and_backoff() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(show_duration(Duration::from_secs(5400)), "1h30m");
        let b = Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(25),
            jitter: false,
        };
        let waits: Vec<u64> = (2..6).map(|a| b.wait(a, 0.0).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 25, 25]);
        let spread = Backoff { jitter: true, ..b };
        assert_eq!(spread.wait(2, 0.0), Duration::from_millis(7500));
        assert_eq!(spread.wait(2, 1.0), Duration::from_millis(12500));
    }
}
