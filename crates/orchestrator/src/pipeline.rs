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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;
use strata_common::{Location, did_you_mean};
use strata_project::{Error, Result};

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

const ALERT_EVENTS: [&str; 4] = ["failure", "retries_exhausted", "sla_miss", "success"];

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

type Parsed<T> = std::result::Result<T, (String, String)>;

fn parse(stem: &str, doc: &Json, file: &Path) -> Parsed<Pipeline> {
    let Json::Object(m) = doc else {
        return Err((
            String::new(),
            "a pipeline must be a mapping with `steps`".into(),
        ));
    };
    const KEYS: [&str; 7] = [
        "name",
        "description",
        "schedule",
        "steps",
        "alerts",
        "max_active_runs",
        "on_interrupt",
    ];
    unknown_keys(m, &KEYS, "a pipeline")?;
    let name = match m.get("name") {
        None => stem.to_string(),
        Some(Json::String(s)) if valid_name(s) => s.clone(),
        Some(other) => {
            return Err((
                "name:".into(),
                format!("`name: {other}` is not a pipeline name: use letters, digits, `_` and `-`"),
            ));
        }
    };
    let schedule = match m.get("schedule") {
        None | Some(Json::Null) => None,
        Some(s) => Some(schedule(s)?),
    };
    let Some(Json::Array(list)) = m.get("steps") else {
        return Err((
            "steps".into(),
            "a pipeline needs `steps:`, a list of steps".into(),
        ));
    };
    if list.is_empty() {
        return Err(("steps".into(), "`steps:` is empty".into()));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let previous = steps.last().map(|p: &Step| p.name.clone());
        let step = step(s, i, previous)?;
        if steps.iter().any(|o| o.name == step.name) {
            return Err((
                format!("name: {}", step.name),
                format!("two steps are named `{}`", step.name),
            ));
        }
        steps.push(step);
    }
    check_dependencies(&steps)?;
    let alerts = match m.get("alerts") {
        None | Some(Json::Null) => Alerts::default(),
        Some(a) => alerts(a)?,
    };
    let max_active_runs = match m.get("max_active_runs") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(|n| n as usize)
            .ok_or_else(|| {
                (
                    "max_active_runs".into(),
                    format!("`max_active_runs: {v}` must be a whole number, 1 or more"),
                )
            })?,
    };
    let on_interrupt = match m.get("on_interrupt").and_then(Json::as_str) {
        None if !m.contains_key("on_interrupt") => OnInterrupt::Resume,
        Some("resume") => OnInterrupt::Resume,
        Some("restart") => OnInterrupt::Restart,
        Some("fail") => OnInterrupt::Fail,
        _ => {
            return Err((
                "on_interrupt".into(),
                format!(
                    "`on_interrupt: {}` must be `resume`, `restart` or `fail`",
                    m["on_interrupt"]
                ),
            ));
        }
    };
    Ok(Pipeline {
        name,
        file: file.to_path_buf(),
        schedule,
        steps,
        alerts,
        max_active_runs,
        on_interrupt,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn unknown_keys(m: &serde_json::Map<String, Json>, keys: &[&str], what: &str) -> Parsed<()> {
    for k in m.keys() {
        if !keys.contains(&k.as_str()) {
            return Err((
                format!("{k}:"),
                format!(
                    "`{k}` is not a key of {what}{}; the keys are {}",
                    did_you_mean(k, keys.iter().copied()),
                    keys.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn schedule(s: &Json) -> Parsed<Schedule> {
    let m = match s {
        // `schedule: "0 6 * * *"`: a cron expression alone.
        Json::String(cron) => {
            let mut m = serde_json::Map::new();
            m.insert("cron".into(), Json::String(cron.clone()));
            m
        }
        Json::Object(m) => m.clone(),
        other => {
            return Err((
                "schedule".into(),
                format!(
                    "`schedule: {other}` must be a cron expression or a mapping with `cron`, `timezone`, `catchup`, `after`"
                ),
            ));
        }
    };
    unknown_keys(&m, &["cron", "timezone", "catchup", "after"], "a schedule")?;
    let timezone = match m.get("timezone") {
        None => chrono_tz::UTC,
        Some(Json::String(tz)) => tz.parse::<chrono_tz::Tz>().map_err(|_| {
            (
                tz.clone(),
                format!(
                    "`timezone: {tz}` is not a time zone: use an IANA name such as UTC, Europe/Berlin or America/New_York"
                ),
            )
        })?,
        Some(other) => {
            return Err((
                "timezone".into(),
                format!("`timezone: {other}` must be a time zone name"),
            ));
        }
    };
    let cron = match m.get("cron") {
        None | Some(Json::Null) => None,
        Some(Json::String(c)) => {
            crate::cron::parse(c).map_err(|e| (c.clone(), e))?;
            Some(c.clone())
        }
        Some(other) => {
            return Err((
                "cron".into(),
                format!("`cron: {other}` must be a quoted cron expression such as \"0 6 * * *\""),
            ));
        }
    };
    let after = names(m.get("after"), "after")?;
    if cron.is_none() && after.is_empty() {
        return Err((
            "schedule".into(),
            "a schedule needs a `cron` expression or `after` (other pipelines)".into(),
        ));
    }
    Ok(Schedule {
        cron,
        timezone,
        catchup: flag(m.get("catchup"), "catchup")?,
        after,
    })
}

fn flag(v: Option<&Json>, key: &str) -> Parsed<bool> {
    match v {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(other) => Err((
            format!("{key}:"),
            format!("`{key}: {other}` must be true or false"),
        )),
    }
}

/// A name or a list of names.
fn names(v: Option<&Json>, key: &str) -> Parsed<Vec<String>> {
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::String(s)) => Ok(vec![s.clone()]),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    (
                        format!("{key}:"),
                        format!("`{key}` lists names; {i} is not one"),
                    )
                })
            })
            .collect(),
        Some(other) => Err((
            format!("{key}:"),
            format!("`{key}: {other}` must be a name or a list of names"),
        )),
    }
}

const STEP_KEYS: [&str; 15] = [
    "name",
    "after",
    "retries",
    "backoff",
    "timeout",
    "on_failure",
    "poke_interval",
    "ingest",
    "build",
    "run",
    "test",
    "snapshot",
    "seed",
    "sensor",
    "command",
];
const STEP_TYPES: [&str; 8] = [
    "ingest", "build", "run", "test", "snapshot", "seed", "sensor", "command",
];

fn step(s: &Json, index: usize, previous: Option<String>) -> Parsed<Step> {
    let Json::Object(m) = s else {
        return Err((
            "steps".into(),
            format!(
                "step {} must be a mapping with a `name` and what it does",
                index + 1
            ),
        ));
    };
    let name = match m.get("name") {
        Some(Json::String(n)) if valid_name(n) => n.clone(),
        Some(other) => {
            return Err((
                format!("{other}"),
                format!("`name: {other}` is not a step name: use letters, digits, `_` and `-`"),
            ));
        }
        None => {
            return Err((
                first_key_needle(m),
                format!("step {} has no `name`", index + 1),
            ));
        }
    };
    let at = |msg: String| (format!("name: {name}"), format!("step `{name}`: {msg}"));
    for k in m.keys() {
        if !STEP_KEYS.contains(&k.as_str()) {
            let types = did_you_mean(k, STEP_TYPES);
            return Err((
                format!("{k}:"),
                format!(
                    "step `{name}`: `{k}` is not a step type or setting{types}; a step is one of {}",
                    STEP_TYPES.join(", ")
                ),
            ));
        }
    }
    let given: Vec<&str> = STEP_TYPES
        .iter()
        .copied()
        .filter(|t| m.contains_key(*t))
        .collect();
    let kind = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(at(format!(
                "says nothing to do: give it one of {}",
                STEP_TYPES.join(", ")
            )));
        }
        many => {
            return Err(at(format!(
                "does {} at once: one step does one thing",
                many.join(" and ")
            )));
        }
    };
    let body = &m[kind];
    let action = match kind {
        "command" => match body {
            Json::String(c) if !c.trim().is_empty() => Action::Command(c.clone()),
            other => return Err(at(format!("`command: {other}` must be a shell command"))),
        },
        "sensor" => Action::Sensor(sensor(body).map_err(at)?),
        "ingest" => Action::Ingest {
            select: selection(body, kind).map_err(at)?.0,
        },
        _ => {
            let (select, exclude, full_refresh) = selection(body, kind).map_err(at)?;
            Action::Strata {
                command: kind.to_string(),
                select,
                exclude,
                full_refresh,
            }
        }
    };
    let after = match m.get("after") {
        Some(v) => names(Some(v), "after")?,
        None => previous.into_iter().collect(),
    };
    let retries = match m.get("retries") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= 100)
            .ok_or_else(|| {
                at(format!(
                    "`retries: {v}` must be a whole number from 0 to 100"
                ))
            })?,
    };
    let backoff = match m.get("backoff") {
        None => Backoff::default(),
        Some(b) => backoff(b).map_err(at)?,
    };
    let timeout = match m.get("timeout") {
        None | Some(Json::Null) => None,
        Some(v) => Some(duration(v, "timeout").map_err(at)?),
    };
    let on_failure = match m.get("on_failure").and_then(Json::as_str) {
        None if !m.contains_key("on_failure") => OnFailure::Stop,
        Some("stop") => OnFailure::Stop,
        Some("continue") => OnFailure::Continue,
        _ => {
            return Err(at(format!(
                "`on_failure: {}` must be `stop` or `continue`",
                m["on_failure"]
            )));
        }
    };
    let poke_interval = match m.get("poke_interval") {
        None => Duration::from_secs(60),
        Some(_) if kind != "sensor" => {
            return Err(at("`poke_interval` is for sensors".into()));
        }
        Some(v) => duration(v, "poke_interval").map_err(at)?,
    };
    Ok(Step {
        name,
        action,
        after,
        retries,
        backoff,
        timeout,
        on_failure,
        poke_interval,
    })
}

fn first_key_needle(m: &serde_json::Map<String, Json>) -> String {
    m.keys().next().map(|k| format!("{k}:")).unwrap_or_default()
}

/// `{select: …, exclude: …, full_refresh: …}`, a selection alone (`build: "+mart_mrr"`), or
/// nothing (`build: {}`, everything).
fn selection(
    body: &Json,
    kind: &str,
) -> std::result::Result<(Option<String>, Option<String>, bool), String> {
    match body {
        Json::Null => Ok((None, None, false)),
        Json::String(s) => Ok((Some(s.clone()), None, false)),
        Json::Object(m) => {
            let keys: &[&str] = match kind {
                "ingest" => &["select"],
                _ => &["select", "exclude", "full_refresh"],
            };
            for k in m.keys() {
                if !keys.contains(&k.as_str()) {
                    return Err(format!(
                        "`{k}` is not a setting of `{kind}`{}; it takes {}",
                        did_you_mean(k, keys.iter().copied()),
                        keys.join(", ")
                    ));
                }
            }
            let text = |k: &str| -> std::result::Result<Option<String>, String> {
                match m.get(k) {
                    None | Some(Json::Null) => Ok(None),
                    Some(Json::String(s)) => Ok(Some(s.clone())),
                    Some(Json::Array(items)) => Ok(Some(
                        items
                            .iter()
                            .map(|i| {
                                i.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| i.to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    )),
                    Some(other) => Err(format!(
                        "`{k}: {other}` must be a selection such as \"+mart_mrr\""
                    )),
                }
            };
            let full_refresh = match m.get("full_refresh") {
                None => false,
                Some(Json::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!("`full_refresh: {other}` must be true or false"));
                }
            };
            Ok((text("select")?, text("exclude")?, full_refresh))
        }
        other => Err(format!(
            "`{kind}: {other}` must be a mapping such as {{select: \"+mart_mrr\"}}"
        )),
    }
}

fn sensor(body: &Json) -> std::result::Result<Sensor, String> {
    let Json::Object(m) = body else {
        return Err(format!(
            "`sensor: {body}` must be a mapping: {{files: GLOB}}, {{freshness: SELECTION}} or {{sql: CONDITION}}"
        ));
    };
    let kinds = ["files", "freshness", "sql"];
    if m.len() != 1 {
        return Err(format!(
            "a sensor waits for one thing: one of {}",
            kinds.join(", ")
        ));
    }
    let (k, v) = m.iter().next().ok_or("an empty sensor")?;
    let text = |v: &Json| match v {
        Json::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        other => Err(format!("`{k}: {other}` must be text")),
    };
    match k.as_str() {
        "files" => Ok(Sensor::Files(text(v)?)),
        "sql" => Ok(Sensor::Sql(text(v)?)),
        "freshness" => Ok(Sensor::Freshness(match v {
            Json::Null | Json::Bool(true) => None,
            other => Some(text(other)?),
        })),
        other => Err(format!(
            "`{other}` is not a sensor{}; a sensor waits for one of {}",
            did_you_mean(other, kinds),
            kinds.join(", ")
        )),
    }
}

fn backoff(b: &Json) -> std::result::Result<Backoff, String> {
    let Json::Object(m) = b else {
        return Err(format!(
            "`backoff: {b}` must be a mapping such as {{initial: 10s, max: 5m}}"
        ));
    };
    let keys = ["initial", "max", "jitter"];
    for k in m.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(format!(
                "`{k}` is not a setting of `backoff`{}; it takes {}",
                did_you_mean(k, keys),
                keys.join(", ")
            ));
        }
    }
    let mut out = Backoff::default();
    if let Some(v) = m.get("initial") {
        out.initial = duration(v, "initial")?;
    }
    if let Some(v) = m.get("max") {
        out.max = duration(v, "max")?;
    }
    if out.max < out.initial {
        out.max = out.initial;
    }
    match m.get("jitter") {
        None => {}
        Some(Json::Bool(b)) => out.jitter = *b,
        Some(other) => return Err(format!("`jitter: {other}` must be true or false")),
    }
    Ok(out)
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

fn duration(v: &Json, key: &str) -> std::result::Result<Duration, String> {
    let parsed = match v {
        Json::Number(n) => n.as_f64().and_then(|s| parse_duration(&s.to_string())),
        Json::String(s) => parse_duration(s),
        _ => None,
    };
    parsed
        .ok_or_else(|| format!("`{key}: {v}` is not a duration: write it as 30s, 5m, 1h or 1h30m"))
}

fn alerts(a: &Json) -> Parsed<Alerts> {
    let Json::Object(m) = a else {
        return Err((
            "alerts".into(),
            format!("`alerts: {a}` must be a mapping with `on` and `webhook` or `email`"),
        ));
    };
    unknown_keys(m, &["on", "sla", "webhook", "email"], "alerts")?;
    let on = names(m.get("on"), "on")?;
    for event in &on {
        if !ALERT_EVENTS.contains(&event.as_str()) {
            return Err((
                event.clone(),
                format!(
                    "alerts: `{event}` is not an event{}; the events are {}",
                    did_you_mean(event, ALERT_EVENTS),
                    ALERT_EVENTS.join(", ")
                ),
            ));
        }
    }
    let sla = match m.get("sla") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(
            chrono::NaiveTime::parse_from_str(s, "%H:%M")
                .or_else(|_| chrono::NaiveTime::parse_from_str(s, "%H:%M:%S"))
                .map(Sla::At)
                .ok()
                .or_else(|| parse_duration(s).map(Sla::After))
                .ok_or_else(|| {
                    (
                        "sla".into(),
                        format!(
                            "alerts: `sla: {s}` is neither a time of day such as \"07:30\" nor a duration such as 2h"
                        ),
                    )
                })?,
        ),
        Some(other) => {
            return Err((
                "sla".into(),
                format!(
                    "alerts: `sla: {other}` must be a quoted time of day such as \"07:30\" or a duration such as 2h"
                ),
            ));
        }
    };
    let webhook = match m.get("webhook") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err((
                "webhook".into(),
                format!("alerts: `webhook: {other}` must be a URL"),
            ));
        }
    };
    let email = names(m.get("email"), "email")?;
    if !on.is_empty() && webhook.is_none() && email.is_empty() {
        return Err((
            "alerts".into(),
            "alerts: say where to send them: `webhook: URL` or `email: [address]`".into(),
        ));
    }
    if on.iter().any(|e| e == "sla_miss") && sla.is_none() {
        return Err((
            "sla_miss".into(),
            "alerts: `sla_miss` needs `sla:`, a time of day (\"07:30\") or a duration after the run is due (2h)".into(),
        ));
    }
    Ok(Alerts {
        on,
        sla,
        webhook,
        email,
    })
}

/// Every `after` names a step, and no steps wait for each other in a circle.
fn check_dependencies(steps: &[Step]) -> Parsed<()> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for s in steps {
        for a in &s.after {
            if !index.contains_key(a.as_str()) {
                return Err((
                    format!("name: {}", s.name),
                    format!(
                        "step `{}` waits for `{a}`, which is not a step of this pipeline{}",
                        s.name,
                        did_you_mean(a, steps.iter().map(|s| s.name.as_str()))
                    ),
                ));
            }
            if a == &s.name {
                return Err((
                    format!("name: {}", s.name),
                    format!("step `{}` waits for itself", s.name),
                ));
            }
        }
    }
    // Depth-first search for a cycle, reporting it in order.
    let mut state: BTreeMap<usize, u8> = BTreeMap::new();
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        state: &mut BTreeMap<usize, u8>,
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match state.get(&i) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| *p == i).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(i);
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(i, 1);
        path.push(i);
        for a in &steps[i].after {
            if let Some(&j) = index.get(a.as_str())
                && let Some(cycle) = visit(j, steps, index, state, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(i, 2);
        None
    }
    for i in 0..steps.len() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(i, steps, &index, &mut state, &mut path) {
            let names: Vec<&str> = cycle
                .iter()
                .rev()
                .map(|&j| steps[j].name.as_str())
                .collect();
            let first = &steps[cycle[0]].name;
            return Err((
                format!("name: {first}"),
                format!(
                    "the steps wait for each other in a circle: {}",
                    names.join(" → ")
                ),
            ));
        }
    }
    Ok(())
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
